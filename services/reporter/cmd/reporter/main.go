// Command reporter runs runbook's REPORT service against a NATS JetStream
// server: it folds every run's events and publishes each final run's
// report.ready once.
package main

import (
	"os"

	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/reporter"
)

func main() {
	os.Exit(svcmain.Main("reporter", func(d svcmain.Deps) (svcmain.Service, error) {
		return reporter.New(d.Bus, reporter.Options{}, d.Log, d.Metrics, d.Registry), nil
	}))
}
