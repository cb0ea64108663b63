package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter/report"
)

func revertCmd(g *globals) *cobra.Command {
	var reason string
	var watch, dryRun bool
	c := &cobra.Command{
		Use:   "revert RUN --reason TEXT",
		Short: "Undo a run that ended SUCCESS: a new run of its rollback steps, against its backup",
		Long: `revert undoes RUN, a run that ended SUCCESS, with a new run of its own: its
plan (plan.Revert) runs RUN's rollback_plan.rollback_steps as deploy steps,
with RUN's approvals, risk, scope, pre-flight checks, monitor and
notifications, and re-runs the smoke suites RUN's rollback_plan.verify names
as its tests. Its change id is REVERT-<RUN's change id>; its plan says
reverts: RUN, so restore steps (and RUNBOOK_BACKUP_DIR) read RUN's backup.
Its own rollback is one described step: a revert that fails part-way ends
FAILED with nothing undone, and its report says what is left to do.

The new run goes through the whole pipeline like a submitted plan, signed by
you: pre-flight checks RUN again (it ended SUCCESS, no other revert of it
ran) and records revert.requested on RUN, so RUN's report says "Reverted by"
and the new run's says "Reverts". --dry-run prints the revert plan instead
(check it with runbook validate).

Exit 6 when RUN cannot be reverted (still running, rolled back, failed, or
already reverted), with the reason.`,
		Example: `  runbook revert DEPLOY-20250922-143000 --reason "customers report wrong estimates" --watch`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, run := cmd.Context(), args[0]
			bus, closeFn, err := g.connectRun(ctx, run)
			if err != nil {
				return err
			}
			defer closeFn()
			st, err := foldRun(ctx, bus, run)
			if err != nil {
				return err
			}
			var others []*runstate.State
			for _, by := range st.RevertedBy() {
				o, err := foldRun(ctx, bus, by)
				if err != nil {
					return err
				}
				others = append(others, o)
			}
			if refusal := st.RevertRefusal(others); refusal != nil {
				return &exitError{exitTooLate, refusal}
			}
			data, err := plan.Revert([]byte(st.Request.GetChangeRequested().GetPlanYaml()), plan.RevertOf{Run: run, Reason: reason, Requester: g.whoami()})
			if err != nil {
				return err
			}
			if dryRun {
				_, err := g.out.Write(data)
				return err
			}
			source := "revert-" + run + ".yaml"
			p, issues := plan.Parse(source, data)
			if p == nil {
				return fmt.Errorf("the revert plan of %s is invalid: %s", run, plan.Errors(issues))
			}
			for _, i := range issues {
				fmt.Fprintln(g.errOut, issueLine(source, i))
			}
			rev, err := Submit(ctx, bus, source, data, p, g.whoami())
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "submitted the revert of %s (%s: %s) as run %s: %d step(s) of %s's rollback, against its backup, once pre-flight and approvals pass\n",
				run, p.ChangeRequest.ID, p.ChangeRequest.Title, rev, len(p.Deploy.Steps), run)
			if !watch {
				return nil
			}
			return watchRun(ctx, bus, rev, g)
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why (the revert's business justification; in both reports)")
	c.Flags().BoolVarP(&watch, "watch", "w", false, "follow the revert run until its report is ready")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the revert plan (YAML) and submit nothing")
	_ = c.MarkFlagRequired("reason")
	return c
}

// foldRun folds a run's history (runstate).
func foldRun(ctx context.Context, bus *eventbus.Bus, run string) (*runstate.State, error) {
	hist, err := bus.RunHistory(ctx, run)
	if err != nil {
		return nil, err
	}
	st := runstate.New(run)
	for _, e := range hist {
		st.ApplyAt(e.Seq, e.Event)
	}
	return st, nil
}

// linkedReport is the report RUN published (rr) with the links it learned
// since (report.Report.Link: the runs that revert it), for `runbook
// report`'s summary and Markdown.
func linkedReport(ctx context.Context, bus *eventbus.Bus, run string, rr *runbookv1.ReportReady) (*report.Report, error) {
	var r report.Report
	if err := json.Unmarshal([]byte(rr.GetReportJson()), &r); err != nil {
		return nil, fmt.Errorf("read the report JSON of run %s: %w", run, err)
	}
	st, err := foldRun(ctx, bus, run)
	if err != nil {
		return nil, err
	}
	r.Link(st)
	return &r, nil
}
