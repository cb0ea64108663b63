package decision

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/gate"
	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

const planText = `change_request: {id: CR-DEC, title: "decisions", type: maintenance, priority: low}
requester: {name: rita, role: SRE, contact: rita@example.com}
approval:
  technical_approval: {approver: tina}
  business_approval: {approver: bob}
deploy:
  steps:
    - {name: noop, command: {argv: ["true"]}}
`

var t0 = time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)

type people struct {
	kr        *trust.Keyring
	keys      map[string]nkeys.KeyPair
	pubs      map[string]string
	requested *runbookv1.Event
}

func newPeople(t *testing.T) *people {
	t.Helper()
	p := &people{kr: &trust.Keyring{}, keys: map[string]nkeys.KeyPair{}, pubs: map[string]string{}}
	for name, role := range map[string]trust.Role{"rita": trust.Requester, "tina": trust.Approver, "bob": trust.Approver, "olga": trust.Requester} {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		p.keys[name], p.pubs[name] = kp, pub
		p.kr.Identities = append(p.kr.Identities, trust.Identity{Name: name, Role: role, PublicKey: pub})
	}
	return p
}

// history builds run R's envelopes: the change request signed by rita,
// then evs.
func (p *people) history(t *testing.T, evs ...*runbookv1.Event) []eventbus.Envelope {
	t.Helper()
	cr := eventbus.New("R", &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		PlanYaml: planText, PlanSha256: plan.Hash([]byte(planText)), PlanSource: "plan.yaml"}})
	cr.Actor, cr.Time = "rita", timestamppb.New(t0)
	if err := trust.Sign(p.keys["rita"], cr, plan.Hash([]byte(planText)), string(trust.Requester), t0); err != nil {
		t.Fatal(err)
	}
	out := []eventbus.Envelope{{Seq: 1, Event: cr}}
	for i, ev := range evs {
		if ev.Time == nil {
			ev.Time = timestamppb.New(t0.Add(time.Duration(i+1) * time.Second))
		}
		out = append(out, eventbus.Envelope{Seq: uint64(i + 2), Event: ev})
	}
	return out
}

func passed() []*runbookv1.Event {
	return []*runbookv1.Event{
		eventbus.New("R", &runbookv1.Event_PreflightPassed{PreflightPassed: &runbookv1.PreflightResult{}}),
		eventbus.New("R", &runbookv1.Event_PlanAssessed{PlanAssessed: &runbookv1.PlanAssessed{ApprovalsRequired: []string{"technical_approval", "business_approval"}}}),
	}
}

// sign signs an outcome's event as name would (the CLI with its creds, the
// dashboard's page with the loaded key).
func (p *people) sign(t *testing.T, name string, o *Outcome) *runbookv1.Event {
	t.Helper()
	if err := trust.Sign(p.keys[name], o.Event, o.SignPlan, o.SignRole, o.Event.GetTime().AsTime()); err != nil {
		t.Fatal(err)
	}
	return o.Event
}

// The CLI and the dashboard build every decision here: an approval by the
// named approver counts and says what the gate still waits for; a second
// role's approval opens the gate; the requester's own approval and an
// unrequired role are refused and recorded as approval.refused (once);
// repeating an approval publishes nothing; a rejection, a cancel before
// and after the deploy started, and a rollback are the events the CLI has
// always published; a decision on an ended run, or an approval once the
// deploy started, is too late; an unknown run is ErrNoRun.
func TestDecide(t *testing.T) {
	t.Parallel()
	p := newPeople(t)
	sha := plan.Hash([]byte(planText))
	fold := func(evs ...*runbookv1.Event) *Facts {
		t.Helper()
		f, err := Fold("R", p.history(t, evs...), p.kr, true)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	decide := func(f *Facts, name string, r Request) *Outcome {
		t.Helper()
		r.As, r.Key, r.Time = name, p.pubs[name], t0.Add(time.Minute)
		o, err := f.Decide(r)
		if err != nil {
			t.Fatalf("%s %s: %v", name, r.Action, err)
		}
		return o
	}

	f := fold(passed()...)
	o := decide(f, "tina", Request{Action: Approve, Role: "technical_approval", Comment: "looks fine"})
	if o.Refused != nil || o.Event.GetType() != "approval.granted" || o.Event.GetActor() != "tina" ||
		o.SignPlan != sha || o.SignRole != "technical_approval" || o.Event.GetApprovalGranted().GetComment() != "looks fine" {
		t.Fatalf("tina's approval: %+v %v", o, o.Event)
	}
	if o.After.State != gate.WaitingApproval || strings.Join(o.After.Missing, ",") != "business_approval" {
		t.Errorf("after tina: %+v", o.After)
	}
	tinas := p.sign(t, "tina", o)

	f = fold(append(passed(), tinas)...)
	if again := decide(f, "tina", Request{Action: Approve, Role: "technical_approval"}); !again.Repeat || again.Event != nil || !strings.Contains(again.Text, "nothing new") {
		t.Errorf("repeated approval: %+v", again)
	}
	o = decide(f, "bob", Request{Action: Approve, Role: "business_approval"})
	if o.After.State != gate.Open {
		t.Errorf("after bob: %+v", o.After)
	}
	// Tina filling a second role is refused; so is rita approving her own
	// change and olga a role the run does not require.
	for _, c := range []struct {
		who, role, want string
	}{
		{"tina", "business_approval", `the plan names "bob" as the approver`},
		{"rita", "business_approval", "the requester cannot approve their own change"},
		{"olga", "security_approval", "not one this run requires"},
	} {
		o := decide(f, c.who, Request{Action: Approve, Role: c.role})
		if o.Refused == nil || !strings.Contains(o.Text, c.want) || !strings.HasPrefix(o.Text, "refused: ") ||
			o.Event.GetType() != "approval.refused" || !strings.Contains(o.Event.GetApprovalRefused().GetReason(), c.want) {
			t.Errorf("%s as %s: %+v (%v)", c.who, c.role, o, o.Event)
		}
		// Recorded once: the same refusal on a history that has it
		// publishes nothing.
		refusal := p.sign(t, c.who, o)
		if o2 := decide(fold(append(passed(), tinas, refusal)...), c.who, Request{Action: Approve, Role: c.role}); o2.Refused == nil || o2.Event != nil {
			t.Errorf("%s as %s again: %+v", c.who, c.role, o2)
		}
	}

	// A rejection.
	o = decide(f, "bob", Request{Action: Reject, Role: "business_approval", Reason: "not during the sale"})
	if o.Event.GetType() != "approval.rejected" || o.Event.GetApprovalRejected().GetReason() != "not during the sale" || !strings.Contains(o.Text, "ends REJECTED") {
		t.Errorf("rejection: %+v %v", o, o.Event)
	}
	if o := decide(f, "bob", Request{Action: Reject, Role: "business_approval"}); o.Refused == nil || !strings.Contains(o.Text, "must say why") {
		t.Errorf("rejection without a reason: %+v", o)
	}

	// Cancel before the deploy: run.cancelled, once.
	o = decide(f, "olga", Request{Action: Cancel, Reason: "wrong week"})
	if o.Event.GetType() != "run.cancelled" || !o.Once || o.SignRole != string(trust.Requester) || o.SignPlan != sha ||
		o.Event.GetRunCancelled().GetReason() != "cancelled by olga: wrong week" {
		t.Errorf("cancel: %+v %v", o, o.Event)
	}
	// Once the deploy started: approvals are closed, a cancel is a rollback.
	started := append(passed(), tinas, eventbus.New("R", &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{}}))
	f = fold(started...)
	if _, err := f.Decide(Request{Action: Approve, Role: "business_approval", As: "bob", Key: p.pubs["bob"]}); !isTooLate(err) || !strings.Contains(err.Error(), "approvals are closed") {
		t.Errorf("approval after deploy.started: %v", err)
	}
	o = decide(f, "olga", Request{Action: Cancel})
	if rr := o.Event.GetRollbackRequested(); rr == nil || o.Once || rr.GetRequestedBy() != "operator" ||
		rr.GetReason() != "cancelled during ACT by olga: cancelled by an operator" {
		t.Errorf("cancel during ACT: %+v %v", o, o.Event)
	}
	o = decide(f, "olga", Request{Action: Rollback, Reason: "customers see errors"})
	if rr := o.Event.GetRollbackRequested(); rr.GetReason() != "rollback requested by olga: customers see errors" ||
		o.Event.GetId() != "R/rollback.requested/operator/20261206T020100.000" || !strings.HasPrefix(o.Text, "R: ") {
		t.Errorf("rollback: %+v %v", o, o.Event)
	}
	if _, err := f.Decide(Request{Action: Rollback, As: "olga"}); err == nil || !strings.Contains(err.Error(), "must say why") {
		t.Errorf("rollback without a reason: %v", err)
	}

	// An ended run.
	f = fold(append(started, eventbus.New("R", &runbookv1.Event_RollbackDone{RollbackDone: &runbookv1.DeployFinished{}}))...)
	for _, a := range Actions {
		if _, err := f.Decide(Request{Action: a, Role: "business_approval", As: "bob", Reason: "x"}); !isTooLate(err) || !strings.Contains(err.Error(), "already ended ROLLED_BACK") {
			t.Errorf("%s on an ended run: %v", a, err)
		}
	}
	if _, err := Fold("NOPE", nil, p.kr, true); !errors.Is(err, ErrNoRun) {
		t.Errorf("unknown run: %v", err)
	}
}

// With a keyring the run is read as the deployer reads it: an approval
// whose signature does not verify fills no role, so the rightful approver
// is not refused for "a role is filled once".
func TestFoldVerifiesSignatures(t *testing.T) {
	t.Parallel()
	p := newPeople(t)
	forged := eventbus.New("R", &runbookv1.Event_ApprovalGranted{ApprovalGranted: &runbookv1.Approval{
		Role: "technical_approval", Approver: "tina", PlanSha256: plan.Hash([]byte(planText))}}, "forged")
	forged.Actor = "tina"
	f, err := Fold("R", p.history(t, append(passed(), forged)...), p.kr, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Decisions) != 1 || !strings.Contains(f.Decisions[0].Invalid, "must be signed") {
		t.Fatalf("decisions %+v", f.Decisions)
	}
	o, err := f.Decide(Request{Action: Approve, Role: "technical_approval", As: "tina", Key: p.pubs["tina"], Time: t0})
	if err != nil || o.Refused != nil || o.Event.GetType() != "approval.granted" {
		t.Fatalf("tina after a forged approval in her name: %+v %v", o, err)
	}
	if _, err := ParseAction("approve "); err != nil {
		t.Error(err)
	}
	if _, err := ParseAction("deploy"); err == nil || !strings.Contains(err.Error(), "approve, reject, cancel or rollback") {
		t.Errorf("ParseAction(deploy): %v", err)
	}
}

func isTooLate(err error) bool {
	var late *TooLate
	return errors.As(err, &late)
}
