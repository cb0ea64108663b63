// Command tester runs runbook's TEST phase service: smoke and load tests of a
// run after its deploy is done.
package main

import (
	"os"

	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/tester"
)

func main() {
	os.Exit(svcmain.Main("tester", func(d svcmain.Deps) (svcmain.Service, error) {
		return tester.New(d.Bus, tester.Options{}, d.Log, d.Metrics, d.Registry), nil
	}))
}
