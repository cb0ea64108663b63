package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter/report"
)

func retroCmd(g *globals) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "retro RUN",
		Short: "Print the deployment retrospective of a run, prefilled from its events (YAML)",
		Long: `retro prints the seed's deployment-retrospective-template.yml for RUN,
prefilled from the run's events: participants (requester, approvers,
operator), what went well and wrong, action items from the report's
recommendations, and the metrics analysis (planned vs actual duration,
downtime, the pass rate of each type of test). Lessons learned and process
improvements are left for the meeting. Exit code 4 while the run is not over.

The template's test_coverage is named test_pass_rate: it is the share of
the run's tests that passed. A run that was rolled back or failed does not
list its deploy under what went well.

-o yaml and -o table (the default) print the template with its comments;
-o json prints the same document as JSON.`,
		Example: `  runbook retro DEPLOY-20250922-143000 > retro.yaml
  runbook retro DEPLOY-20250922-143000 -o json | jq .what_went_wrong`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeRunID,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			bus, closeFn, err := g.connectRun(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer closeFn()
			history, err := bus.RunHistory(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			events := make([]*runbookv1.Event, len(history))
			for i, e := range history {
				events[i] = e.Event
			}
			r, err := report.Retro(args[0], events)
			if err != nil {
				return err
			}
			if !r.Final {
				return &exitError{exitNoReport, fmt.Errorf("run %s is not over yet (%s; follow it with `runbook watch %s`)", args[0], r.Status, args[0])}
			}
			if format == formatJSON {
				return render(g.out, format, r.Doc(), nil)
			}
			// The template's own layout and comments: the same document.
			fmt.Fprint(g.out, r.YAML())
			return nil
		},
	}
	outputFlag(c, &format, formatTable, "the seed's YAML template, as yaml")
	return c
}
