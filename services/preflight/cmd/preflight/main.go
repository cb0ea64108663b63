// Command preflight runs runbook's PRE-FLIGHT/PLAN service on its own.
package main

import (
	"os"

	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/preflight"
)

func main() {
	os.Exit(svcmain.Main("preflight", func(d svcmain.Deps) (svcmain.Service, error) {
		return preflight.New(d.Bus, preflight.Options{}, d.Log, d.Metrics, d.Registry), nil
	}))
}
