package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter/report"
)

func retroCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "retro RUN",
		Short: "Print the deployment retrospective of a run, prefilled from its events (YAML)",
		Long: `retro prints the seed's deployment-retrospective-template.yml for RUN,
prefilled from the run's events: participants (requester, approvers,
operator), what went well and wrong, action items from the report's
recommendations, and the metrics analysis (planned vs actual duration,
downtime, test coverage). Lessons learned and process improvements are left
for the meeting. Exit code 4 while the run is not over.`,
		Example: `  runbook retro DEPLOY-20250922-143000 > retro.yaml`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
				return &exitError{4, fmt.Errorf("run %s is not over yet (%s; follow it with `runbook watch %s`)", args[0], r.Status, args[0])}
			}
			fmt.Fprint(g.out, r.YAML())
			return nil
		},
	}
}
