package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/eventbus/decision"
)

func approveCmd(g *globals) *cobra.Command {
	var role, comment, sha string
	c := &cobra.Command{
		Use:   "approve RUN --role ROLE --as NAME [--comment TEXT]",
		Short: "Approve a run as one of the roles it requires",
		Long: `approve publishes approval.granted for RUN: NAME approves as ROLE, bound to
the exact plan of the run (its sha256). The deploy starts once pre-flight
passed, every required role approved, nothing was rejected and the change
window is open (runbook watch RUN shows what it waits for).

Separation of duties, checked here and again by the deployer: the requester
cannot approve their own change; one person cannot fill two roles of the
same run; the role must be one the run requires; when the plan names the
role's approver (approval.<role>.approver), NAME must be that person
(names compare case-insensitively). A refused approval is recorded as
approval.refused and exits 5. Approving again as the same person and role
changes nothing. Exit 6: the run already ended or started its deploy.`,
		Example: `  runbook approve DEPLOY-20250922-143000 --role technical_approval --as "Lead Architect" --comment "reviewed the migration"
  runbook approve RUN --role security_approval --as "Security Officer" --plan-sha256 $(sha256sum plan.yaml | cut -d' ' -f1)`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeRunID,
		RunE: func(cmd *cobra.Command, args []string) error {
			as := g.whoami()
			return decide(cmd.Context(), g, args[0], decision.Request{Action: decision.Approve, Role: role, As: as, Comment: comment, PlanSHA256: sha})
		},
	}
	f := c.Flags()
	f.StringVar(&role, "role", "", "the role you approve as (one the run requires, e.g. technical_approval)")
	g.asFlag(c, "your name, as the plan names the role's approver; the key that signs must be this identity's")
	_ = c.RegisterFlagCompletionFunc("role", g.completeRunRole)
	f.StringVar(&comment, "comment", "", "a comment kept with the approval")
	f.StringVar(&sha, "plan-sha256", "", "approve only if the run's plan is exactly this one (sha256 of the file you reviewed)")
	_ = c.MarkFlagRequired("role")
	return c
}

func rejectCmd(g *globals) *cobra.Command {
	var role, reason, sha string
	c := &cobra.Command{
		Use:   "reject RUN --role ROLE --as NAME --reason TEXT",
		Short: "Reject a run: it ends REJECTED and never deploys",
		Long: `reject publishes approval.rejected for RUN: NAME, as ROLE, rejects the change
for REASON. The run ends REJECTED (unless its deploy already started) and
its report says who and why. The role and the person are checked as for
approve (exit 5, recorded as approval.refused); exit 6 when the run already
ended or started its deploy.`,
		Example:           `  runbook reject DEPLOY-20250922-143000 --role business_approval --as "Bob" --reason "not during the sale"`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeRunID,
		RunE: func(cmd *cobra.Command, args []string) error {
			as := g.whoami()
			return decide(cmd.Context(), g, args[0], decision.Request{Action: decision.Reject, Role: role, As: as, Reason: reason, PlanSHA256: sha})
		},
	}
	f := c.Flags()
	f.StringVar(&role, "role", "", "the role you decide as (one the run requires)")
	g.asFlag(c, "your name, as the plan names the role's approver; the key that signs must be this identity's")
	_ = c.RegisterFlagCompletionFunc("role", g.completeRunRole)
	f.StringVar(&reason, "reason", "", "why the change is rejected (kept in the report)")
	f.StringVar(&sha, "plan-sha256", "", "reject only if the run's plan is exactly this one")
	_ = c.MarkFlagRequired("role")
	_ = c.MarkFlagRequired("reason")
	return c
}

// decide checks and publishes one approval or rejection (package
// decision: the same checks and events as the dashboard's).
func decide(ctx context.Context, g *globals, run string, r decision.Request) error {
	bus, closeFn, err := g.connectRun(ctx, run)
	if err != nil {
		return err
	}
	defer closeFn()
	f, err := decision.Load(ctx, bus, run, nil)
	if err != nil {
		return decisionError(err)
	}
	r.Key = bus.SignerKey()
	o, err := f.Decide(r)
	if err != nil {
		return decisionError(err)
	}
	if o.Event != nil {
		if err := bus.Sign(o.Event, o.SignPlan, o.SignRole); err != nil {
			return err
		}
		if _, err := bus.Publish(ctx, o.Event); err != nil {
			if o.Refused != nil {
				return fmt.Errorf("%s refused (%v), and recording the refusal failed: %w", r.Action, o.Refused.Err, err)
			}
			return err
		}
	}
	if o.Refused != nil {
		return &exitError{exitRefused, o.Refused}
	}
	fmt.Fprintln(g.out, o.Text)
	if next := o.Next(f); next != "" && o.Event != nil {
		fmt.Fprintln(g.out, next)
	}
	return nil
}

// decisionError gives a decision's error its exit code: 2 for an unknown
// run, 6 when it is too late.
func decisionError(err error) error {
	var late *decision.TooLate
	switch {
	case errors.Is(err, decision.ErrNoRun):
		return &exitError{2, err}
	case errors.As(err, &late):
		return &exitError{exitTooLate, err}
	}
	return err
}
