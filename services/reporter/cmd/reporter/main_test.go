package main

import (
	"testing"

	"github.com/kis-core/runbook/eventbus/svcmain/svcmaintest"
	"github.com/spf13/cobra"
)

// docs/cli.md's table of the reporter's own flags is generated from them.
func TestFlagsDoc(t *testing.T) {
	svcmaintest.CheckFlagsDoc(t, "../../../../docs/cli.md", "reporter", func() *cobra.Command { c, _ := command(); return c })
}
