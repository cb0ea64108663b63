module github.com/kis-core/runbook/services/deployer

go 1.26.0

require github.com/prometheus/client_golang v1.25.0 // indirect
