module github.com/kis-core/runbook/cmd/runbook

go 1.26
