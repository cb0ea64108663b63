module github.com/kis-core/runbook/examples

go 1.26
