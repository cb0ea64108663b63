// Command preflight runs runbook's PRE-FLIGHT/PLAN service on its own.
package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/preflight"
)

func main() { os.Exit(svcmain.Run(command())) }

func command() *cobra.Command {
	return svcmain.Command(svcmain.Preflight, nil, func(d svcmain.Deps) (svcmain.Service, error) {
		kf, err := d.RequireKeyring("preflight")
		if err != nil {
			return nil, err
		}
		o := preflight.Options{Consumer: d.Consumer()}
		if kf != nil {
			o.Keyring = kf
		}
		return preflight.New(d.Bus, o, d.Log, d.Metrics, d.Registry), nil
	})
}
