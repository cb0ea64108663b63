module github.com/kis-core/runbook/services/deployer

go 1.26
