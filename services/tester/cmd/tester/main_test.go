package main

import (
	"testing"

	"github.com/kis-core/runbook/eventbus/svcmain/svcmaintest"
)

// docs/cli.md's table of the tester's own flags is generated from them.
func TestFlagsDoc(t *testing.T) {
	svcmaintest.CheckFlagsDoc(t, "../../../../docs/cli.md", "tester", command)
}
