// Command monitor runs runbook's watch-window service on its own: on
// deploy.started it samples the plan's monitor sources, publishes breaches,
// and asks for a rollback when the auto-rollback rule holds. It receives
// Alertmanager's webhooks at /api/v1/alertmanager on --metrics-listen.
package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/monitor"
	"github.com/kis-core/runbook/services/monitor/source"
)

func main() { os.Exit(svcmain.Run(command())) }

func command() *cobra.Command {
	return svcmain.Command(svcmain.Monitor, nil, func(d svcmain.Deps) (svcmain.Service, error) {
		// The plans' auth_env variables are read from this process's
		// environment; the Alertmanager receiver is served on
		// --metrics-listen at monitor.AlertmanagerPath.
		return monitor.New(d.Bus, monitor.Options{Consumer: d.Consumer(), Sources: source.Config{Getenv: os.LookupEnv}}, d.Log, d.Metrics, d.Registry), nil
	})
}
