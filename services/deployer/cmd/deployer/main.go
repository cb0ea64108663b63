// Command deployer runs runbook's ACT service (deploy and rollback) on its own.
package main

import (
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/deployer"
)

func main() { os.Exit(svcmain.Run(command())) }

func command() *cobra.Command {
	var stateDir string
	return svcmain.Command(svcmain.Deployer, func(fs *pflag.FlagSet) {
		fs.StringVar(&stateDir, "state-dir", svcmain.EnvOr(svcmain.EnvStateDir, deployer.DefaultStateDir()),
			"where the pid files of running step commands are kept, swept at start (what a killed deployer's steps left running is killed); env "+svcmain.EnvStateDir)
	}, func(d svcmain.Deps) (svcmain.Service, error) {
		kf, err := d.RequireKeyring("deployer")
		if err != nil {
			return nil, err
		}
		o := deployer.Options{Consumer: d.Consumer(), StateDir: stateDir}
		if kf != nil {
			o.Keyring = kf
		}
		return deployer.New(d.Bus, o, d.Log, d.Metrics, d.Registry), nil
	})
}
