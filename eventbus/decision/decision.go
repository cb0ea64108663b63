// Package decision is a person's decision on a run — approve, reject,
// cancel, roll back — checked and built the one way both places a person
// acts from use: the CLI (runbook approve, reject, cancel, rollback) and the
// dashboard (services/reporter/api). It reads the run as the gate sees it
// (Fold: the run's fold, its decisions, its plan), refuses what is too late
// with one sentence, runs the gate's separation-of-duties checks
// (domain/gate) and returns the event to sign and publish: the decision,
// or the approval.refused that records a refused one.
//
// It neither signs nor publishes: the CLI signs with the identity's key
// (eventbus.Bus.Sign), the dashboard has the person's browser sign the
// event's trust.SigningBytes and the read API publishes it (docs/security.md,
// "Acting from the dashboard").
package decision

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/gate"
	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/risk"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/domain/vocab"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Action is what a person does to a run.
type Action string

const (
	// Approve publishes approval.granted for one of the run's roles.
	Approve Action = "approve"
	// Reject publishes approval.rejected: the run ends REJECTED.
	Reject Action = "reject"
	// Cancel ends the run CANCELLED before its deploy started
	// (run.cancelled); once it started, it asks for the rollback.
	Cancel Action = "cancel"
	// Rollback asks for the run's rollback (rollback.requested).
	Rollback Action = "rollback"
)

// Actions are the actions, in the order a page offers them.
var Actions = []Action{Approve, Reject, Cancel, Rollback}

// ParseAction reads an action's name.
func ParseAction(s string) (Action, error) {
	for _, a := range Actions {
		if string(a) == strings.ToLower(strings.TrimSpace(s)) {
			return a, nil
		}
	}
	return "", fmt.Errorf("unknown action %q: use approve, reject, cancel or rollback", s)
}

// ErrNoRun: the run has no change.requested.
var ErrNoRun = errors.New("no such run")

// TooLate is a decision that cannot be taken any more: the run ended, its
// deploy started (approve, reject), or its plan is invalid. Nothing is
// published. The CLI exits 6 on it.
type TooLate struct{ msg string }

func (e *TooLate) Error() string { return e.msg }

// Refused is a decision the gate refuses (separation of duties, a role the
// run does not require, another plan): it is recorded as approval.refused.
// The CLI exits 5 on it.
type Refused struct{ Err error }

func (e *Refused) Error() string {
	return fmt.Sprintf("refused: %v (recorded as approval.refused)", e.Err)
}
func (e *Refused) Unwrap() error { return e.Err }

// Facts is a run as a decision sees it.
type Facts struct {
	Run   string
	State *runstate.State
	// Gate is what the gate knows of the run; nil when its plan is invalid.
	Gate *gate.Run
	// Decisions are the run's approvals and rejections in stream order,
	// each Invalid when its signature is refused or the deployer refused it.
	Decisions []gate.Decision
	planErr   error
}

// Load reads run's history from the bus and folds it (Fold). On an
// authenticated bus an unsigned decision counts for nothing, as at the
// deployer; kr (nil: not known here) also verifies every signature.
func Load(ctx context.Context, bus *eventbus.Bus, run string, kr *trust.Keyring) (*Facts, error) {
	hist, err := bus.RunHistory(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("read run %s: %w", run, err)
	}
	return Fold(run, hist, kr, bus.SignerKey() != "")
}

// Fold reads a run's history (in stream order) as the gate sees it. With a
// keyring every decision's signature is verified as the deployer verifies
// it (gate.Verified); without one, when signed is set (an authenticated
// bus), an unsigned decision counts for nothing and the deployer alone
// checks signatures. An approval the deployer refused (its
// approval.refused) counts for nothing either. A run without a
// change.requested is ErrNoRun.
func Fold(run string, hist []eventbus.Envelope, kr *trust.Keyring, signed bool) (*Facts, error) {
	f := &Facts{Run: run, State: runstate.New(run)}
	st := f.State
	for _, e := range hist {
		ev := e.Event
		if !st.ApplyAt(e.Seq, ev) {
			continue // an event id already folded
		}
		var d gate.Decision
		var ok bool
		if kr != nil {
			d, ok = gate.Verified(kr, ev, st.PlanSHA256)
		} else if d, ok = gate.DecisionOf(ev); ok && signed && d.Key == "" {
			d.Invalid = "unsigned"
		}
		if ok {
			f.Decisions = append(f.Decisions, d)
		}
	}
	cr := st.Request
	if cr == nil {
		return nil, fmt.Errorf("%w: %s (list runs with `runbook runs`)", ErrNoRun, run)
	}
	for i, d := range f.Decisions {
		if f.Decisions[i].Invalid == "" && st.Seen(eventbus.ID(run, "approval.refused", "of", strings.TrimPrefix(d.ID, run+"/"))) {
			f.Decisions[i].Invalid = "refused by the deployer"
		}
	}
	p, _ := plan.FromChangeRequest(cr.GetChangeRequested())
	if p == nil {
		f.planErr = &TooLate{fmt.Sprintf("run %s has an invalid plan: it will never deploy, there is nothing to decide", run)}
		return f, nil
	}
	required := st.ApprovalsRequired
	if !st.Assessed {
		// Pre-flight has not assessed the plan yet: the same assessment.
		required = risk.Assess(p.RisksAndMitigations, p.Approval).ApprovalsRequired
	}
	f.Gate = gate.NewRun(p, []byte(cr.GetChangeRequested().GetPlanYaml()), cr.GetActor(), required, st.ReadyAt)
	f.Gate.RequesterKey = st.RequesterKey
	return f, nil
}

// Request is one decision as a person asks for it.
type Request struct {
	Action Action
	// Role is the approval role (approve, reject).
	Role string
	// As is who decides: the approver's name (approve, reject) or the
	// operator's (cancel, rollback). The signing key must be this
	// identity's.
	As string
	// Comment goes with an approval; Reason says why a run is rejected,
	// cancelled or rolled back.
	Comment, Reason string
	// PlanSHA256 (approve, reject) binds the decision to this plan; empty:
	// the run's.
	PlanSHA256 string
	// Key is the public key that will sign the event ("" unsigned).
	Key string
	// Time is the decision's time: the event's and its signature's.
	Time time.Time
}

// Outcome is what a decision comes to.
type Outcome struct {
	// Event is to be signed over SignPlan as SignRole and published; nil
	// when there is nothing new to publish (Repeat, or a refusal already
	// recorded).
	Event              *runbookv1.Event
	SignPlan, SignRole string
	// Once: publish with eventbus.Bus.PublishOnce (run.cancelled; a second
	// is refused by the stream, which is not an error).
	Once bool
	// Refused is set when the gate refused the decision: Event (when not
	// nil) is the approval.refused that records it.
	Refused *Refused
	// Repeat: the same person already made the same decision.
	Repeat bool
	// After is the gate once this approval counts (approve only).
	After gate.Verdict
	// Text says what happened, in one line (the CLI prints it; the
	// dashboard shows it).
	Text string
}

// Decide checks r against the run and builds its event. An error is
// TooLate (nothing to publish), or a request that names no action.
func (f *Facts) Decide(r Request) (*Outcome, error) {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	switch r.Action {
	case Approve, Reject:
		return f.decide(r)
	case Cancel, Rollback:
		return f.stop(r)
	}
	return nil, fmt.Errorf("unknown action %q: use approve, reject, cancel or rollback", r.Action)
}

// decide checks and builds one approval or rejection.
func (f *Facts) decide(r Request) (*Outcome, error) {
	run, st := f.Run, f.State
	if f.planErr != nil {
		return nil, f.planErr
	}
	switch {
	case st.Status.Final():
		return nil, &TooLate{fmt.Sprintf("run %s already ended %s: there is nothing to %s", run, st.Status, r.Action)}
	case st.DeployStarted():
		return nil, &TooLate{fmt.Sprintf("run %s already started its deploy: approvals are closed (to undo it, request a rollback)", run)}
	}
	d := gate.Decision{Role: r.Role, Approver: r.As, Actor: r.As, Comment: r.Comment, PlanSHA256: r.PlanSHA256, Time: r.Time, Key: r.Key}
	d.Kind = gate.Grant
	if r.Action == Reject {
		d.Kind, d.Comment, d.Reason = gate.Reject, "", r.Reason
	}
	if d.PlanSHA256 == "" {
		d.PlanSHA256 = f.Gate.PlanSHA256
	}
	parts := []any{gate.RoleKey(d.Role), gate.NameKey(d.Person())}
	if d.Key != "" {
		// One decision per signing key: another key naming the same person
		// is another decision (and refused).
		parts = append(parts, d.Key)
	}
	a := &runbookv1.Approval{Role: d.Role, Approver: d.Approver, Comment: d.Comment, Reason: d.Reason, PlanSha256: d.PlanSHA256}
	var payload any
	var refusal error
	if d.Kind == gate.Grant {
		payload = &runbookv1.Event_ApprovalGranted{ApprovalGranted: a}
		refusal = f.Gate.Check(f.Gate.Tally(f.Decisions).Accepted, d)
	} else {
		payload = &runbookv1.Event_ApprovalRejected{ApprovalRejected: a}
		refusal = f.Gate.CheckReject(d)
	}
	if refusal != nil {
		a.Reason = refusal.Error()
		if d.Kind == gate.Reject {
			a.Comment = "rejection: " + d.Reason
		}
		ev := eventbus.New(run, &runbookv1.Event_ApprovalRefused{ApprovalRefused: a}, append([]any{r.Action}, parts...)...)
		o := &Outcome{Refused: &Refused{refusal}, SignPlan: f.Gate.PlanSHA256, SignRole: d.Role}
		o.Text = o.Refused.Error()
		if !st.Seen(ev.Id) { // the same refused decision is recorded once
			o.Event = f.stamp(ev, r)
		}
		return o, nil
	}
	d.ID = eventbus.ID(run, string(d.Kind), parts...)
	if st.Seen(d.ID) {
		return &Outcome{Repeat: true, Text: fmt.Sprintf("%s already %sd %s as %s: nothing new was published", d.Person(), r.Action, run, d.Role)}, nil
	}
	o := &Outcome{Event: f.stamp(eventbus.New(run, payload, parts...), r), SignPlan: d.PlanSHA256, SignRole: d.Role}
	if d.Kind == gate.Reject {
		o.Text = fmt.Sprintf("%s rejected %s as %s: the run ends REJECTED and will not deploy", d.Person(), run, d.Role)
		return o, nil
	}
	o.After = f.Gate.Evaluate(append(f.Decisions, d), r.Time)
	o.Text = fmt.Sprintf("%s approved %s as %s (plan sha256 %s)", d.Person(), run, d.Role, d.PlanSHA256)
	return o, nil
}

// Next says, after an approval, what the run waits for now ("" for any
// other decision): the same lines for the CLI and the dashboard.
func (o *Outcome) Next(f *Facts) string {
	if o.Event.GetType() != string(gate.Grant) {
		return ""
	}
	v := o.After
	switch {
	case v.State == gate.WaitingApproval:
		return "still waiting for approval by " + strings.Join(v.Missing, ", ")
	case v.State == gate.WaitingWindow:
		return "every required approval is in; the deploy waits for the change window until " + v.Until.UTC().Format(gate.TimeFormat)
	case v.State == gate.Open && f.Gate.ReadyAt.IsZero():
		return "every required approval is in; the deploy starts once pre-flight passes"
	case v.State == gate.Open:
		return "every required approval is in: the deploy starts now"
	case v.State == gate.Expired:
		return "but the run has expired: " + v.Reason
	}
	return ""
}

// stop builds run.cancelled (cancel before ACT) or rollback.requested
// (rollback, or cancel once the deploy started).
func (f *Facts) stop(r Request) (*Outcome, error) {
	run, st := f.Run, f.State
	if st.Status.Final() {
		return nil, &TooLate{fmt.Sprintf("run %s already ended %s: nothing to stop", run, st.Status)}
	}
	reason := r.Reason
	if strings.TrimSpace(reason) == "" {
		if r.Action == Rollback {
			return nil, errors.New("a rollback must say why (--reason)")
		}
		reason = "cancelled by an operator"
	}
	o := &Outcome{SignPlan: st.PlanSHA256, SignRole: string(trust.Requester)}
	if r.Action == Cancel && !st.DeployStarted() {
		o.Event = eventbus.New(run, &runbookv1.Event_RunCancelled{RunCancelled: &runbookv1.RunEnded{
			Reason: fmt.Sprintf("cancelled by %s: %s", r.As, reason)}})
		o.Once = true
	} else {
		verb := "rollback requested"
		if r.Action == Cancel {
			verb = "cancelled during ACT"
		}
		o.Event = eventbus.New(run, &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{
			RequestedBy: "operator", Reason: fmt.Sprintf("%s by %s: %s", verb, r.As, reason)}},
			"operator", r.Time.UTC().Format("20060102T150405.000"))
	}
	f.stamp(o.Event, r)
	_, text := vocab.Describe(o.Event)
	o.Text = run + ": " + text
	return o, nil
}

// stamp sets the event's actor and time (the signature's time).
func (f *Facts) stamp(ev *runbookv1.Event, r Request) *runbookv1.Event {
	ev.Actor = r.As
	ev.Time = timestamppb.New(r.Time.UTC())
	return ev
}
