module github.com/kis-core/runbook/examples

go 1.26.0

require (
	github.com/goccy/go-yaml v1.19.2
	github.com/prometheus/client_golang v1.25.0
	github.com/prometheus/client_model v0.6.3
)
