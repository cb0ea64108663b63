package main

import (
	"testing"

	"github.com/kis-core/runbook/eventbus/svcmain/svcmaintest"
)

// docs/cli.md's table of the monitor's own flags is generated from them.
func TestFlagsDoc(t *testing.T) {
	svcmaintest.CheckFlagsDoc(t, "../../../../docs/cli.md", "monitor", command)
}
