module github.com/kis-core/runbook/services/reporter

go 1.26
