// Command monitor runs runbook's watch-window service on its own: on
// deploy.started it samples the plan's monitor sources, publishes breaches,
// and asks for a rollback when the auto-rollback rule holds.
package main

import (
	"os"

	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/monitor"
)

func main() {
	os.Exit(svcmain.Main("monitor", func(d svcmain.Deps) (svcmain.Service, error) {
		return monitor.New(d.Bus, monitor.Options{}, d.Log, d.Metrics, d.Registry), nil
	}))
}
