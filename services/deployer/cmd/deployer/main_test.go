package main

import (
	"testing"

	"github.com/kis-core/runbook/eventbus/svcmain/svcmaintest"
)

// docs/cli.md's table of the deployer's own flags is generated from them.
func TestFlagsDoc(t *testing.T) {
	svcmaintest.CheckFlagsDoc(t, "../../../../docs/cli.md", "deployer", command)
}
