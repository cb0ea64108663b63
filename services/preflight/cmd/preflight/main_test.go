package main

import (
	"testing"

	"github.com/kis-core/runbook/eventbus/cliconv"
	"github.com/kis-core/runbook/eventbus/svcmain"
)

// docs/cli.md's table of the preflight's own flags is generated from them
// (cliconv.CheckDoc): defaults as without any RUNBOOK_ variable.
func TestFlagsDoc(t *testing.T) {
	for _, v := range svcmain.Env() {
		t.Setenv(v.Name, "")
	}
	t.Setenv("TMPDIR", "/tmp")
	c := command()
	if err := cliconv.CheckDoc("../../../../docs/cli.md", "flags-preflight", cliconv.FlagTable(svcmain.OwnFlags(c))); err != nil {
		t.Error(err)
	}
}
