module github.com/kis-core/runbook/services/preflight

go 1.26
