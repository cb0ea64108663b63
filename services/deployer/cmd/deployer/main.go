// Command deployer runs runbook's ACT service (deploy and rollback) on its own.
package main

import (
	"flag"
	"os"

	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/deployer"
)

func main() {
	var stateDir string
	os.Exit(svcmain.MainWithFlags("deployer", func(fs *flag.FlagSet) {
		fs.StringVar(&stateDir, "state-dir", envOr(svcmain.EnvStateDir, deployer.DefaultStateDir()),
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
	}))
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
