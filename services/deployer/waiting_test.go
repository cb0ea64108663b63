package deployer_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/deployer"
)

// clock is the gate's clock in these tests: real time plus an offset the
// test moves forward.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
	calls  int
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return time.Now().Add(c.offset)
}

// polled waits until the gate has read the clock n more times: the waiting
// handler has looked at the run again.
func (c *clock) polled(t *testing.T, n int) {
	t.Helper()
	c.mu.Lock()
	want := c.calls + n
	c.mu.Unlock()
	natstest.Eventually(t, 10*time.Second, "gate polls", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.calls >= want
	})
}

// settled waits until the deployer has acked every message: no handler
// holds one.
func (h *harness) settled(t *testing.T) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, "deployer consumer settled", func() bool {
		c, err := h.bus.JetStream().Consumer(context.Background(), eventbus.AuditStream, deployer.Durable)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	})
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

func startWithClock(t *testing.T, c *clock) *harness {
	t.Helper()
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	ctx, cancel := context.WithCancel(context.Background())
	svc := deployer.New(natstest.Bus(t, s, "deployer"), deployer.Options{
		Consumer:     eventbus.ConsumerOptions{Backoff: []time.Duration{20 * time.Millisecond}},
		Now:          c.Now,
		PollInterval: 20 * time.Millisecond,
	}, testLog(t), nil, nil)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &harness{bus: bus}
}

func gatedPlan(extra string) string {
	return `change_request: {id: CR-G, title: gate test, type: maintenance, priority: low}
requester: {name: Rita, role: SRE}
` + extra + `
deploy:
  steps:
    - {name: noop, command: {argv: ["true"]}}
`
}

// submitted publishes change.requested (by alice), plan.assessed with the
// required roles and preflight.passed.
func (h *harness) submitted(t *testing.T, run, planYAML string, required ...string) {
	t.Helper()
	cr := eventbus.New(run, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{PlanYaml: planYAML, PlanSha256: plan.Hash([]byte(planYAML))}})
	cr.Actor = "alice"
	h.publish(t, cr,
		eventbus.New(run, &runbookv1.Event_PlanAssessed{PlanAssessed: &runbookv1.PlanAssessed{ApprovalsRequired: required}}),
		preflightPassed(run))
}

func granted(run, planYAML, role, who string) *runbookv1.Event {
	ev := eventbus.New(run, &runbookv1.Event_ApprovalGranted{ApprovalGranted: &runbookv1.Approval{Role: role, Approver: who, PlanSha256: plan.Hash([]byte(planYAML))}}, role, who)
	ev.Actor = who
	return ev
}

func (h *harness) last(t *testing.T, run, typ string) *runbookv1.Event {
	t.Helper()
	h.waitFor(t, run, typ)
	e, err := h.bus.LastEvent(context.Background(), run, typ)
	if err != nil {
		t.Fatal(err)
	}
	return e.Event
}

// The approval timeout counts from the time pre-flight passed (an event
// time), on the gate's clock.
func TestApprovalTimeoutExpires(t *testing.T) {
	t.Parallel()
	c := &clock{}
	h := startWithClock(t, c)
	p := gatedPlan("approval:\n  timeout: 1h\n  tech_approval: {}\n")
	h.submitted(t, "G1", p, "tech_approval")
	w := h.last(t, "G1", "run.waiting").GetRunWaiting()
	passed := h.last(t, "G1", "preflight.passed").GetTime().AsTime()
	if !w.GetDeadline().AsTime().Equal(passed.Add(time.Hour)) || strings.Join(w.GetWaitingFor(), ",") != "tech_approval" {
		t.Fatalf("run.waiting %v (pre-flight passed at %s)", w, passed)
	}
	c.advance(59 * time.Minute)
	c.polled(t, 6) // several looks at the run: still waiting
	if h.count(t, "G1", "run.expired") != 0 {
		t.Fatal("expired before the timeout")
	}
	c.advance(time.Minute)
	exp := h.last(t, "G1", "run.expired").GetRunExpired()
	if !strings.Contains(exp.GetReason(), "approvals timed out: no approval by tech_approval within 1h") {
		t.Fatalf("run.expired %q", exp.GetReason())
	}
	if h.count(t, "G1", "deploy.started") != 0 || h.count(t, "G1", "run.waiting") != 1 {
		t.Fatalf("deploy.started %d, run.waiting %d", h.count(t, "G1", "deploy.started"), h.count(t, "G1", "run.waiting"))
	}
}

// planned_start holds the deploy until the gate's clock reaches it.
func TestWindowOpensOnTheClock(t *testing.T) {
	t.Parallel()
	c := &clock{}
	h := startWithClock(t, c)
	start := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	p := gatedPlan(fmt.Sprintf("timeline: {planned_start: %q}", start.Format(time.RFC3339)))
	h.submitted(t, "G2", p)
	w := h.last(t, "G2", "run.waiting").GetRunWaiting()
	if !w.GetUntil().AsTime().Equal(start) || w.GetWaitingFor()[0] != "change_window" || !strings.Contains(w.GetReason(), "waiting for the change window until "+start.Format(time.RFC3339)) {
		t.Fatalf("run.waiting %v", w)
	}
	c.advance(2 * time.Hour)
	h.waitFor(t, "G2", "deploy.done")
}

// Approvals published straight to NATS, past the CLI: each invalid one is
// refused once (approval.refused, a deterministic id), the valid ones
// count, and a run.waiting is published once per waiting state.
func TestInvalidApprovalsAreRefusedOnce(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	h := startWithClock(t, clk)
	p := gatedPlan("approval:\n  a_approval: {}\n  b_approval: {approver: Bea}\n")
	h.submitted(t, "G3", p, "a_approval", "b_approval")
	h.waitFor(t, "G3", "run.waiting")
	other := granted("G3", p, "b_approval", "Bea")
	other.GetApprovalGranted().PlanSha256 = plan.Hash([]byte("another plan"))
	other.Id += "/other"
	h.publish(t,
		granted("G3", p, "a_approval", "Rita"),  // the requester
		granted("G3", p, "a_approval", "ALICE"), // the submitter
		granted("G3", p, "a_approval", "Xavier"),
		granted("G3", p, "b_approval", "xavier"), // a second role
		other,                                    // another plan
	)
	natstest.Eventually(t, 10*time.Second, "4 refusals", func() bool { return h.count(t, "G3", "approval.refused") == 4 })
	clk.polled(t, 6) // more looks at the run: no refusal twice
	hist, _ := h.bus.RunHistory(context.Background(), "G3")
	reasons := map[string]string{}
	for _, e := range hist {
		if r := e.Event.GetApprovalRefused(); r != nil {
			reasons[strings.TrimPrefix(e.Event.Id, "G3/approval.refused/of/")] = r.GetReason()
		}
	}
	want := map[string]string{
		"approval.granted/a_approval/Rita":      "requester cannot approve",
		"approval.granted/a_approval/ALICE":     "requester cannot approve",
		"approval.granted/b_approval/xavier":    "the plan names \"Bea\"",
		"approval.granted/b_approval/Bea/other": "binds to the exact plan",
	}
	if len(reasons) != len(want) {
		t.Errorf("refusals %v", reasons)
	}
	for id, r := range want {
		if !strings.Contains(reasons[id], r) {
			t.Errorf("refusal of %s: %q, want %q", id, reasons[id], r)
		}
	}
	if h.count(t, "G3", "deploy.started") != 0 {
		t.Fatal("deployed without b_approval")
	}
	h.publish(t, granted("G3", p, "b_approval", "bea"))
	h.waitFor(t, "G3", "deploy.done")
	var waits []string
	hist, _ = h.bus.RunHistory(context.Background(), "G3")
	for _, e := range hist {
		if e.Event.Type == "run.waiting" {
			waits = append(waits, strings.TrimPrefix(e.Event.Id, "G3/run.waiting/"))
		}
	}
	if strings.Join(waits, " ") != "approval/a_approval+b_approval approval/b_approval" {
		t.Errorf("run.waiting ids %v", waits)
	}
	if n := h.count(t, "G3", "approval.refused"); n != 4 {
		t.Errorf("%d refusals at the end", n)
	}
}

// A rejection, by anyone, ends the gate: no deploy, no expiry.
func TestRejectionStopsTheGate(t *testing.T) {
	t.Parallel()
	c := &clock{}
	h := startWithClock(t, c)
	p := gatedPlan("approval:\n  timeout: 1h\n  a_approval: {}\n")
	h.submitted(t, "G4", p, "a_approval")
	h.waitFor(t, "G4", "run.waiting")
	rej := eventbus.New("G4", &runbookv1.Event_ApprovalRejected{ApprovalRejected: &runbookv1.Approval{Role: "a_approval", Approver: "Xavier", Reason: "no"}}, "a_approval", "Xavier")
	rej.Time = timestamppb.Now()
	h.publish(t, rej, granted("G4", p, "a_approval", "Yvonne"))
	// The holder is woken and lets go of its message; nothing holds the run.
	h.settled(t)
	if n, m := h.count(t, "G4", "deploy.started"), h.count(t, "G4", "run.expired"); n != 0 || m != 0 {
		t.Fatalf("after a rejection: deploy.started %d, run.expired %d", n, m)
	}
}
