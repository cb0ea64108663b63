module github.com/kis-core/runbook/services/monitor

go 1.26
