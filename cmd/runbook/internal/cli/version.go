package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/eventbus/buildinfo"
	"github.com/kis-core/runbook/eventbus/cliconv"
	"github.com/kis-core/runbook/eventbus/svcmain"
)

func versionCmd(g *globals) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "version",
		Short: "Print this binary's version, commit and Go version (as --version)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			return render(g.out, format, buildinfo.Get(), func() error {
				_, err := fmt.Fprintln(g.out, cliconv.VersionLine(svcmain.Runbook))
				return err
			})
		},
	}
	outputFlag(c, &format, formatTable, "one line, as --version")
	return c
}
