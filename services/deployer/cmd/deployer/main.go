// Command deployer runs runbook's ACT service (deploy and rollback) on its own.
package main

import (
	"os"

	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/deployer"
)

func main() {
	os.Exit(svcmain.Main("deployer", func(d svcmain.Deps) (svcmain.Service, error) {
		kf, err := d.RequireKeyring("deployer")
		if err != nil {
			return nil, err
		}
		o := deployer.Options{Consumer: d.Consumer()}
		if kf != nil {
			o.Keyring = kf
		}
		return deployer.New(d.Bus, o, d.Log, d.Metrics, d.Registry), nil
	}))
}
