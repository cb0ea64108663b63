package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/domain/gate"
	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/risk"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
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
			return decide(cmd.Context(), g, args[0], gate.Decision{Kind: gate.Grant, Role: role, Approver: as, Actor: as, Comment: comment, PlanSHA256: sha})
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
			return decide(cmd.Context(), g, args[0], gate.Decision{Kind: gate.Reject, Role: role, Approver: as, Actor: as, Reason: reason, PlanSHA256: sha})
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

// runFacts is a run as approve and reject see it: its fold (runstate) and,
// from the same loop, the decisions as this bus counts them.
type runFacts struct {
	gate      *gate.Run
	decisions []gate.Decision
	state     *runstate.State
}

// loadRunFacts reads a run as the gate sees it. On an authenticated bus
// (the bus has a signer) unsigned decisions count for nothing, as at the
// deployer; the deployer alone checks signatures against the keyring.
func loadRunFacts(ctx context.Context, bus *eventbus.Bus, run string) (*runFacts, error) {
	hist, err := bus.RunHistory(ctx, run)
	if err != nil {
		return nil, err
	}
	f := &runFacts{state: runstate.New(run)}
	for _, e := range hist {
		ev := e.Event
		if !f.state.ApplyAt(e.Seq, ev) {
			continue // an event id already folded
		}
		if d, ok := gate.DecisionOf(ev); ok {
			if bus.SignerKey() != "" && d.Key == "" {
				d.Invalid = "unsigned"
			}
			f.decisions = append(f.decisions, d)
		}
	}
	st := f.state
	cr := st.Request
	if cr == nil {
		return nil, &exitError{exitUsage, fmt.Errorf("no run %s (list runs with `runbook runs`)", run)}
	}
	// What the deployer refused (approval.refused "of" the decision's id)
	// counts for nothing here either.
	for i, d := range f.decisions {
		if st.Seen(eventbus.ID(run, "approval.refused", "of", strings.TrimPrefix(d.ID, run+"/"))) && f.decisions[i].Invalid == "" {
			f.decisions[i].Invalid = "refused by the deployer"
		}
	}
	p, _ := plan.FromChangeRequest(cr.GetChangeRequested())
	if p == nil {
		return nil, &exitError{exitTooLate, fmt.Errorf("run %s has an invalid plan: it will never deploy, there is nothing to decide", run)}
	}
	required := st.ApprovalsRequired
	if !st.Assessed {
		// Pre-flight has not assessed the plan yet: the same assessment.
		required = risk.Assess(p.RisksAndMitigations, p.Approval).ApprovalsRequired
	}
	f.gate = gate.NewRun(p, []byte(cr.GetChangeRequested().GetPlanYaml()), cr.GetActor(), required, st.ReadyAt)
	return f, nil
}

// decide checks and publishes one approval or rejection.
func decide(ctx context.Context, g *globals, run string, d gate.Decision) error {
	bus, closeFn, err := g.connectRun(ctx, run)
	if err != nil {
		return err
	}
	defer closeFn()
	f, err := loadRunFacts(ctx, bus, run)
	if err != nil {
		return err
	}
	verb := map[gate.Kind]string{gate.Grant: "approve", gate.Reject: "reject"}[d.Kind]
	switch {
	case f.state.Status.Final():
		return &exitError{exitTooLate, fmt.Errorf("run %s already ended %s: there is nothing to %s", run, f.state.Status, verb)}
	case f.state.DeployStarted():
		return &exitError{exitTooLate, fmt.Errorf("run %s already started its deploy: approvals are closed (to undo it, request a rollback)", run)}
	}
	if d.PlanSHA256 == "" {
		d.PlanSHA256 = f.gate.PlanSHA256
	}
	d.Time = time.Now()
	d.Key = bus.SignerKey()
	parts := []any{gate.RoleKey(d.Role), gate.NameKey(d.Person())}
	if d.Key != "" {
		// One decision per signing key: another key naming the same person
		// is another decision (and refused).
		parts = append(parts, d.Key)
	}
	var payload any
	a := &runbookv1.Approval{Role: d.Role, Approver: d.Approver, Comment: d.Comment, Reason: d.Reason, PlanSha256: d.PlanSHA256}
	var refusal error
	if d.Kind == gate.Grant {
		payload = &runbookv1.Event_ApprovalGranted{ApprovalGranted: a}
		refusal = f.gate.Check(f.gate.Tally(f.decisions).Accepted, d)
	} else {
		payload = &runbookv1.Event_ApprovalRejected{ApprovalRejected: a}
		refusal = f.gate.CheckReject(d)
	}
	if refusal != nil {
		a.Reason = refusal.Error()
		if d.Kind == gate.Reject {
			a.Comment = "rejection: " + d.Reason
		}
		ev := eventbus.New(run, &runbookv1.Event_ApprovalRefused{ApprovalRefused: a}, append([]any{verb}, parts...)...)
		ev.Actor = d.Approver
		if err := bus.Sign(ev, f.gate.PlanSHA256, d.Role); err != nil {
			return err
		}
		if !f.state.Seen(ev.Id) { // the same refused decision is recorded once
			if _, err := bus.Publish(ctx, ev); err != nil {
				return fmt.Errorf("%s refused (%v), and recording the refusal failed: %w", verb, refusal, err)
			}
		}
		return &exitError{exitRefused, fmt.Errorf("refused: %v (recorded as approval.refused)", refusal)}
	}
	d.ID = eventbus.ID(run, string(d.Kind), parts...)
	if f.state.Seen(d.ID) {
		fmt.Fprintf(g.out, "%s already %sd %s as %s: nothing new was published\n", d.Person(), verb, run, d.Role)
		return nil
	}
	ev := eventbus.New(run, payload, parts...)
	ev.Actor = d.Approver
	if err := bus.Sign(ev, d.PlanSHA256, d.Role); err != nil {
		return err
	}
	if _, err := bus.Publish(ctx, ev); err != nil {
		return err
	}
	if d.Kind == gate.Reject {
		fmt.Fprintf(g.out, "%s rejected %s as %s: the run ends REJECTED and will not deploy\n", d.Person(), run, d.Role)
		return nil
	}
	fmt.Fprintf(g.out, "%s approved %s as %s (plan sha256 %s)\n", d.Person(), run, d.Role, d.PlanSHA256)
	v := f.gate.Evaluate(append(f.decisions, d), d.Time)
	switch {
	case v.State == gate.WaitingApproval:
		fmt.Fprintf(g.out, "still waiting for approval by %s\n", strings.Join(v.Missing, ", "))
	case v.State == gate.WaitingWindow:
		fmt.Fprintf(g.out, "every required approval is in; the deploy waits for the change window until %s\n", g.clock(v.Until, isoSeconds))
	case v.State == gate.Open && f.gate.ReadyAt.IsZero():
		fmt.Fprintln(g.out, "every required approval is in; the deploy starts once pre-flight passes")
	case v.State == gate.Open:
		fmt.Fprintln(g.out, "every required approval is in: the deploy starts now")
	case v.State == gate.Expired:
		fmt.Fprintf(g.out, "but the run has expired: %s\n", v.Reason)
	}
	return nil
}
