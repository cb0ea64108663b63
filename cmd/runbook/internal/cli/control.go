package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/decision"
)

func rollbackCmd(g *globals) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "rollback RUN --reason TEXT",
		Short: "Ask for the rollback of a run (by an operator)",
		Long: `rollback publishes rollback.requested for RUN, requested by an operator with
the reason given. The deployer stops a deploy step that is running, then runs
the plan's rollback steps — once per run, whoever asked first. A run that
never deployed anything is stopped and its rollback runs no step (it says so).
Exit 6 when the run has already ended.`,
		Example:           `  runbook rollback DEPLOY-20250922-143000 --reason "customers report wrong estimates"`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeRunID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return operatorStop(cmd.Context(), g, args[0], reason, false)
		},
	}
	c.Flags().StringVar(&reason, "reason", "", "why (kept in the audit log and the report)")
	g.asFlag(c, "your name")
	_ = c.MarkFlagRequired("reason")
	return c
}

func cancelCmd(g *globals) *cobra.Command {
	var reason string
	c := &cobra.Command{
		Use:   "cancel RUN [--reason TEXT]",
		Short: "Stop a run: cancelled before ACT, rolled back during ACT",
		Long: `cancel stops RUN. Before its deploy started, the run ends CANCELLED
(run.cancelled) and nothing is changed. Once the deploy started, cancelling
means rolling back: rollback.requested is published for the operator (see
runbook rollback). Exit 6 when the run has already ended.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeRunID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return operatorStop(cmd.Context(), g, args[0], reason, true)
		},
	}
	c.Flags().StringVar(&reason, "reason", "cancelled by an operator", "why")
	g.asFlag(c, "your name")
	return c
}

// operatorStop publishes run.cancelled (cancel before ACT) or
// rollback.requested (rollback, or cancel once the deploy started), as
// package decision builds them.
func operatorStop(ctx context.Context, g *globals, run, reason string, cancel bool) error {
	bus, closeFn, err := g.connectRun(ctx, run)
	if err != nil {
		return err
	}
	defer closeFn()
	f, err := decision.Load(ctx, bus, run, nil)
	if err != nil {
		return decisionError(err)
	}
	as := g.whoami()
	action := decision.Rollback
	if cancel {
		action = decision.Cancel
	}
	o, err := f.Decide(decision.Request{Action: action, As: as, Reason: reason, Key: bus.SignerKey()})
	if err != nil {
		return decisionError(err)
	}
	if err := bus.Sign(o.Event, o.SignPlan, o.SignRole); err != nil {
		return err
	}
	if o.Once {
		_, err = bus.PublishOnce(ctx, o.Event)
		if errors.Is(err, eventbus.ErrAlreadyPublished) {
			err = nil
		}
	} else {
		_, err = bus.Publish(ctx, o.Event)
	}
	if err != nil {
		return err
	}
	_, text := Describe(o.Event)
	fmt.Fprintf(g.out, "%s: %s\n", run, text)
	return nil
}
