package gate

import (
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var t0 = time.Date(2025, 9, 23, 2, 0, 0, 0, time.UTC)

const hash = "aaaa1111bbbb2222cccc3333dddd4444eeee5555ffff6666aaaa1111bbbb2222"

func run3() *Run {
	return &Run{
		PlanSHA256: hash,
		Requesters: []string{"e2e", "Rita Requester"},
		Required:   []string{"business_approval", "security_approval", "technical_approval"},
		Named:      map[string]string{"technical_approval": "Tina Tech", "business_approval": "Bob Business"},
	}
}

func grant(id, role, who string) Decision {
	return Decision{ID: id, Kind: Grant, Role: role, Approver: who, Actor: who, PlanSHA256: hash, Time: t0}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	accepted := map[string]Decision{"technical_approval": grant("g1", "technical_approval", "Tina Tech")}
	cases := []struct {
		name string
		d    Decision
		want string // "" = valid
	}{
		{"valid", grant("x", "security_approval", "Sam Sec"), ""},
		{"named approver, other case and spaces", grant("x", "business_approval", "  bob   BUSINESS "), ""},
		{"repeat by the same person is valid", grant("x", "technical_approval", "tina tech"), ""},
		{"requester by plan name", grant("x", "security_approval", "rita requester"), "requester cannot approve their own change"},
		{"requester by submitter", grant("x", "security_approval", "E2E"), "requester cannot approve their own change"},
		{"not the named approver", grant("x", "business_approval", "Mallory"), `the plan names "Bob Business" as the approver of business_approval`},
		{"one person two roles", grant("x", "security_approval", "Tina Tech"), "one person cannot fill two roles"},
		{"role filled by another", grant("x", "technical_approval", "Tina Tech"), "technical_approval was already approved by Tina Tech"},
		{"role not required", grant("x", "executive_approval", "Eve"), `role "executive_approval" is not one this run requires (it requires business_approval, security_approval, technical_approval)`},
		{"other plan", func() Decision {
			d := grant("x", "security_approval", "Sam")
			d.PlanSHA256 = strings.Repeat("0", 64)
			return d
		}(), "an approval binds to the exact plan: this approval is for plan sha256 000000000000…, the run's plan is aaaa1111bbbb…"},
		{"no plan", func() Decision { d := grant("x", "security_approval", "Sam"); d.PlanSHA256 = ""; return d }(), "names no plan sha256"},
		{"no role", grant("x", " ", "Sam"), "must name its role"},
		{"no approver", grant("x", "security_approval", ""), "must name its approver"},
		{"approver is not the publisher", func() Decision { d := grant("x", "security_approval", "Sam"); d.Actor = "mallory"; return d }(), `names "Sam" as approver but was made by "mallory"`},
		{"actor alone names the person", func() Decision { d := grant("x", "security_approval", ""); d.Actor = "Sam"; return d }(), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run3()
			acc := accepted
			if c.name == "role filled by another" {
				// Without a named approver, someone else may have filled it.
				delete(r.Named, "technical_approval")
				acc = map[string]Decision{"technical_approval": grant("g0", "technical_approval", "Tom")}
				c.want = "technical_approval was already approved by Tom"
			}
			err := r.Check(acc, c.d)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	if err := (&Run{PlanSHA256: hash}).Check(nil, grant("x", "any", "Sam")); err == nil || !strings.Contains(err.Error(), "requires no approvals") {
		t.Errorf("run without approvals: %v", err)
	}
}

func TestCheckReject(t *testing.T) {
	t.Parallel()
	r := run3()
	d := Decision{Kind: Reject, Role: "security_approval", Approver: "Sam", Actor: "Sam", PlanSHA256: hash, Reason: "not during the sale"}
	if err := r.CheckReject(d); err != nil {
		t.Fatal(err)
	}
	noReason := d
	noReason.Reason = " "
	if err := r.CheckReject(noReason); err == nil || !strings.Contains(err.Error(), "--reason") {
		t.Errorf("no reason: %v", err)
	}
	byRequester := d
	byRequester.Approver, byRequester.Actor = "Rita Requester", ""
	if err := r.CheckReject(byRequester); err == nil || !strings.Contains(err.Error(), "the requester cannot reject their own change") {
		t.Errorf("requester: %v", err)
	}
	wrongRole := d
	wrongRole.Role = "nope"
	if err := r.CheckReject(wrongRole); err == nil || !strings.Contains(err.Error(), "not one this run requires") {
		t.Errorf("wrong role: %v", err)
	}
}

func TestTally(t *testing.T) {
	t.Parallel()
	r := run3()
	ds := []Decision{
		grant("a", "technical_approval", "Tina Tech"),
		grant("a", "technical_approval", "Tina Tech"), // same event twice
		grant("b", "technical_approval", "TINA TECH"), // same person again
		grant("c", "security_approval", "Tina Tech"),  // second role
		grant("d", "security_approval", "Rita Requester"),
		grant("e", "security_approval", "Sam"),
		grant("f", "security_approval", "Sue"), // role already filled
	}
	tl := r.Tally(ds)
	if len(tl.Accepted) != 2 || tl.Accepted["technical_approval"].ID != "a" || tl.Accepted["security_approval"].ID != "e" {
		t.Errorf("accepted %+v", tl.Accepted)
	}
	var refused []string
	for _, f := range tl.Refused {
		refused = append(refused, f.Decision.ID)
	}
	if strings.Join(refused, ",") != "c,d,f" {
		t.Errorf("refused %v", tl.Refused)
	}
	if tl.Rejected != nil {
		t.Errorf("rejected %+v", tl.Rejected)
	}
	// A rejection counts whoever sends it: stopping is always safe.
	tl = r.Tally(append(ds, Decision{ID: "r", Kind: Reject, Role: "whatever", Approver: "x", Reason: "no"}, Decision{ID: "r2", Kind: Reject, Role: "z", Approver: "y"}))
	if tl.Rejected == nil || tl.Rejected.ID != "r" {
		t.Errorf("first rejection: %+v", tl.Rejected)
	}
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	all := []Decision{
		grant("a", "technical_approval", "Tina Tech"),
		grant("b", "business_approval", "Bob Business"),
		grant("c", "security_approval", "Sam"),
	}
	two := all[:2]
	late := func(d Decision, at time.Time) Decision { d.Time = at; return d }
	rejection := Decision{ID: "r", Kind: Reject, Role: "security_approval", Approver: "Sam", Reason: "not now"}

	cases := []struct {
		name     string
		run      func(*Run)
		ds       []Decision
		now      time.Time
		state    State
		missing  string
		until    time.Time
		deadline time.Time
		reason   string
	}{
		{"two of three", nil, two, t0, WaitingApproval, "security_approval", time.Time{}, time.Time{}, "waiting for approval by security_approval"},
		{"all three", nil, all, t0, Open, "", time.Time{}, time.Time{}, "every required approval is in"},
		{"none required", func(r *Run) { r.Required = nil }, nil, t0, Open, "", time.Time{}, time.Time{}, ""},
		{"rejected after all approved", nil, append(all[:3:3], rejection), t0, Rejected, "", time.Time{}, time.Time{}, "rejected by Sam as security_approval: not now"},
		{"refused approvals do not count", nil, append(two[:2:2], grant("x", "security_approval", "Rita Requester")), t0, WaitingApproval, "security_approval", time.Time{}, time.Time{}, ""},
		{"planned start in the future", func(r *Run) { r.PlannedStart = t0.Add(time.Hour) }, all, t0, WaitingWindow, "", t0.Add(time.Hour), time.Time{}, "waiting for the change window until 2025-09-23T03:00:00Z"},
		{"planned start reached", func(r *Run) { r.PlannedStart = t0.Add(time.Hour) }, all, t0.Add(time.Hour), Open, "", time.Time{}, time.Time{}, ""},
		{"planned start in the past (the seed)", func(r *Run) { r.PlannedStart = t0.Add(-48 * time.Hour) }, all, t0, Open, "", time.Time{}, time.Time{}, ""},
		{"emergency ignores planned start", func(r *Run) { r.PlannedStart = t0.Add(time.Hour); r.Emergency = true }, all, t0, Open, "", time.Time{}, time.Time{}, ""},
		{"window end bounds the wait", func(r *Run) { r.PlannedStart = t0.Add(time.Hour); r.WindowEnd = t0.Add(2 * time.Hour) }, all, t0, WaitingWindow, "", t0.Add(time.Hour), t0.Add(2 * time.Hour), "expires at 2025-09-23T04:00:00Z"},
		{"window ended", func(r *Run) { r.WindowEnd = t0.Add(time.Hour) }, two, t0.Add(time.Hour), Expired, "security_approval", time.Time{}, time.Time{}, "the change window ended at 2025-09-23T03:00:00Z before the deploy could start (still waiting for approval by security_approval)"},
		{"window ends, emergency too", func(r *Run) { r.WindowEnd = t0; r.Emergency = true }, all, t0.Add(time.Second), Expired, "", time.Time{}, time.Time{}, "change window ended"},
		{"both missing approvals and window", func(r *Run) { r.PlannedStart = t0.Add(time.Hour) }, two, t0, WaitingApproval, "security_approval", t0.Add(time.Hour), time.Time{}, "; the change window opens at 2025-09-23T03:00:00Z"},
		{"approval timeout pending", func(r *Run) { r.ApprovalTimeout = 4 * time.Hour; r.ReadyAt = t0 }, two, t0.Add(time.Hour), WaitingApproval, "security_approval", time.Time{}, t0.Add(4 * time.Hour), "expires at 2025-09-23T06:00:00Z"},
		{"approval timeout passed", func(r *Run) { r.ApprovalTimeout = 4 * time.Hour; r.ReadyAt = t0 }, two, t0.Add(4 * time.Hour), Expired, "security_approval", time.Time{}, time.Time{}, "approvals timed out: no approval by security_approval within 4h of pre-flight passing (by 2025-09-23T06:00:00Z)"},
		{"late approval does not count", func(r *Run) { r.ApprovalTimeout = time.Hour; r.ReadyAt = t0 }, append(two[:2:2], late(all[2], t0.Add(2*time.Hour))), t0.Add(2 * time.Hour), Expired, "", time.Time{}, time.Time{}, "no approval by security_approval"},
		{"approved in time, waits for the window past the timeout", func(r *Run) {
			r.ApprovalTimeout = time.Hour
			r.ReadyAt = t0
			r.PlannedStart = t0.Add(3 * time.Hour)
		}, all, t0.Add(2 * time.Hour), WaitingWindow, "", t0.Add(3 * time.Hour), time.Time{}, ""},
		{"deadline is the earlier of timeout and window end", func(r *Run) {
			r.ApprovalTimeout = 4 * time.Hour
			r.ReadyAt = t0
			r.WindowEnd = t0.Add(time.Hour)
		}, two, t0, WaitingApproval, "security_approval", time.Time{}, t0.Add(time.Hour), ""},
		{"timeout not counting before pre-flight passed", func(r *Run) { r.ApprovalTimeout = time.Minute }, two, t0.Add(time.Hour), WaitingApproval, "security_approval", time.Time{}, time.Time{}, ""},
		{"both limits passed: the earlier one is the reason", func(r *Run) {
			r.ApprovalTimeout = 2 * time.Hour
			r.ReadyAt = t0
			r.WindowEnd = t0.Add(time.Hour)
		}, two, t0.Add(3 * time.Hour), Expired, "security_approval", time.Time{}, time.Time{}, "change window ended"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run3()
			if c.run != nil {
				c.run(r)
			}
			v := r.Evaluate(c.ds, c.now)
			if v.State != c.state || strings.Join(v.Missing, ",") != c.missing || !v.Until.Equal(c.until) || !v.Deadline.Equal(c.deadline) || !strings.Contains(v.Reason, c.reason) {
				t.Fatalf("got %s missing=%v until=%v deadline=%v reason=%q\nwant %s missing=%s until=%v deadline=%v reason~%q",
					v.State, v.Missing, v.Until, v.Deadline, v.Reason, c.state, c.missing, c.until, c.deadline, c.reason)
			}
		})
	}
}

func TestVerdictNextAndKeys(t *testing.T) {
	t.Parallel()
	v := Verdict{State: WaitingApproval, Missing: []string{"a_approval", "Rôle B"}, Until: t0.Add(time.Hour), Deadline: t0.Add(30 * time.Minute)}
	if !v.Next().Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("next %v", v.Next())
	}
	if k := v.WaitKey(); !strings.HasPrefix(k, "approval/a_approval+Rle B~") {
		t.Errorf("wait key %q", k)
	}
	if w := (Verdict{State: WaitingWindow, Until: t0}).WaitingFor(); len(w) != 1 || w[0] != WindowRole {
		t.Errorf("waiting for %v", w)
	}
	if !(Verdict{State: Open, Until: t0}).Next().IsZero() {
		t.Error("an open gate has no next time")
	}
	if NameKey(" Lead   Architect ") != "lead architect" || NameKey("LEAD ARCHITECT") != NameKey("lead architect") {
		t.Errorf("name key %q", NameKey(" Lead   Architect "))
	}
	if k := NameKey("김철수"); !strings.HasPrefix(k, "~") || k == NameKey("이영희") {
		t.Errorf("non-ASCII name key %q", k)
	}
	if NameKey("a~b") == "a~b" {
		t.Error("a plain key never holds ~")
	}
}

func TestNewRunAndDecisionOf(t *testing.T) {
	t.Parallel()
	text := []byte(`change_request: {id: CR-1, title: t, type: emergency, priority: high}
requester: {name: Rita Requester}
timeline: {planned_start: "2025-09-23T02:00:00Z", window_end: "2025-09-23T04:00:00Z"}
approval:
  timeout: 30m
  technical_approval: {approver: Tina Tech}
  security_approval: {}
`)
	p, issues := plan.Parse("p.yaml", text)
	if p == nil {
		t.Fatal(issues)
	}
	r := NewRun(p, text, "alice", []string{"security_approval", "technical_approval"}, t0)
	if r.PlanSHA256 != plan.Hash(text) || !r.Emergency || !r.PlannedStart.Equal(t0) || !r.WindowEnd.Equal(t0.Add(2*time.Hour)) ||
		r.ApprovalTimeout != 30*time.Minute || strings.Join(r.Requesters, ",") != "alice,Rita Requester" ||
		len(r.Named) != 1 || r.Named["technical_approval"] != "Tina Tech" || !r.ApprovalDeadline().Equal(t0.Add(30*time.Minute)) {
		t.Fatalf("%+v", r)
	}
	ev := &runbookv1.Event{Id: "R/approval.granted/x/y", Actor: "Sam", Time: timestamppb.New(t0),
		Payload: &runbookv1.Event_ApprovalGranted{ApprovalGranted: &runbookv1.Approval{Role: "x", Approver: "Sam", PlanSha256: hash, Comment: "ok"}}}
	d, ok := DecisionOf(ev)
	if !ok || d.Kind != Grant || d.Role != "x" || d.Person() != "Sam" || !d.Time.Equal(t0) || d.Comment != "ok" {
		t.Fatalf("%+v", d)
	}
	if _, ok := DecisionOf(&runbookv1.Event{Payload: &runbookv1.Event_DeployStarted{}}); ok {
		t.Error("deploy.started is no decision")
	}
}

// With signatures: an invalid approval is refused with its reason, a
// replayed nonce is refused even when the first use was fine, keys (not
// names) decide who is who, and a rejection stops the run whatever its
// signature.
func TestTallySigned(t *testing.T) {
	t.Parallel()
	r := run3()
	r.RequesterKey = "UREQ"
	signed := func(id, role, who, key, nonce string) Decision {
		d := grant(id, role, who)
		d.Key, d.Nonce = key, nonce
		return d
	}
	unsigned := grant("u", "technical_approval", "Tina Tech")
	unsigned.Invalid = "refused signature: the decision is not signed"
	ds := []Decision{
		unsigned,
		signed("req", "technical_approval", "Tina Tech", "UREQ", "n0"), // the requester's key, another name
		signed("a", "technical_approval", "Tina Tech", "UTINA", "n1"),  // counts
		signed("replay", "security_approval", "Sam", "USAM", "n1"),     // nonce of "a"
		signed("two", "security_approval", "Someone", "UTINA", "n2"),   // Tina's key, second role
		signed("s", "security_approval", "Sam", "USAM", "n3"),          // counts
	}
	tl := r.Tally(ds)
	if len(tl.Accepted) != 2 || tl.Accepted["technical_approval"].ID != "a" || tl.Accepted["security_approval"].ID != "s" {
		t.Fatalf("accepted %+v", tl.Accepted)
	}
	reasons := map[string]string{}
	for _, f := range tl.Refused {
		reasons[f.Decision.ID] = f.Reason
	}
	for id, want := range map[string]string{"u": "not signed", "req": "requester cannot approve", "replay": "replayed", "two": "cannot fill two roles"} {
		if !strings.Contains(reasons[id], want) {
			t.Errorf("%s refused for %q, want %q", id, reasons[id], want)
		}
	}
	rej := Decision{ID: "r", Kind: Reject, Role: "security_approval", Approver: "x", Reason: "no", Invalid: "refused signature: the decision is not signed"}
	if tl := r.Tally(append(ds, rej)); tl.Rejected == nil || tl.Rejected.ID != "r" {
		t.Errorf("an unsigned rejection must still stop the run: %+v", tl.Rejected)
	}
}
