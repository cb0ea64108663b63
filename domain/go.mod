module github.com/kis-core/runbook/domain

go 1.26

require (
	github.com/goccy/go-yaml v1.19.2 // indirect
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.3 // indirect
	golang.org/x/text v0.14.0 // indirect
	github.com/theory/jsonpath v0.12.3
)
