package cli

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kis-core/runbook/eventbus/cliconv"
	"github.com/kis-core/runbook/eventbus/svcmain"
)

// docs/cli.md's exit codes, global flags and every command's flags are
// generated from the command tree itself (cliconv.CheckDoc), so the page
// cannot drift from the binary.
func TestDocs(t *testing.T) {
	const doc = "../../../../docs/cli.md"
	for _, v := range svcmain.Env() {
		t.Setenv(v.Name, "") // the defaults as without any variable
	}
	root := newRoot(&globals{in: strings.NewReader(""), out: io.Discard, errOut: io.Discard})

	var codes strings.Builder
	codes.WriteString("| code | meaning |\n|---|---|\n")
	for _, c := range exitCodes {
		fmt.Fprintf(&codes, "| %d | %s |\n", c.Code, c.Meaning)
	}
	var cmds strings.Builder
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || sub.Parent().Name() == "completion" {
				continue
			}
			fmt.Fprintf(&cmds, "### %s\n\n`%s`: %s\n\n", sub.CommandPath(), sub.UseLine(), sub.Short)
			own := pflag.NewFlagSet(sub.Name(), pflag.ContinueOnError)
			sub.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
				if f.Name != "help" {
					own.AddFlag(f)
				}
			})
			sub.PersistentFlags().VisitAll(func(f *pflag.Flag) { own.AddFlag(f) })
			cmds.WriteString(cliconv.FlagTable(own) + "\n")
			walk(sub)
		}
	}
	walk(root)
	global := pflag.NewFlagSet("runbook", pflag.ContinueOnError)
	global.AddFlagSet(root.PersistentFlags())
	root.InitDefaultVersionFlag()
	global.AddFlag(root.Flags().Lookup("version"))
	for name, body := range map[string]string{
		"exit-codes":           codes.String(),
		"runbook-global-flags": cliconv.FlagTable(global),
		"runbook-commands":     strings.TrimSuffix(cmds.String(), "\n"),
	} {
		if err := cliconv.CheckDoc(doc, name, body); err != nil {
			t.Error(err)
		}
	}
}
