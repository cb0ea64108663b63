module github.com/kis-core/runbook/services/tester

go 1.26
