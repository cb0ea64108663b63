// Command tester runs runbook's TEST phase service: smoke and load tests of a
// run after its deploy is done.
package main

import (
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/tester"
)

func main() { os.Exit(svcmain.Run(command())) }

func command() *cobra.Command {
	var o tester.Options
	flags := func(fs *pflag.FlagSet) {
		fs.StringVar(&o.SummaryDir, "load-summary-dir", os.Getenv(svcmain.EnvLoadSummaryDir),
			`where each load test's k6-shaped summary is written as <run>-k6-summary.json ("" for none; the test.load event carries it); env `+svcmain.EnvLoadSummaryDir)
	}
	return svcmain.Command(svcmain.Tester, flags, func(d svcmain.Deps) (svcmain.Service, error) {
		o.Consumer = d.Consumer()
		return tester.New(d.Bus, o, d.Log, d.Metrics, d.Registry), nil
	})
}
