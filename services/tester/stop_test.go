package tester_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/tester"
)

// slowTarget answers /fast at once, /slow after 200 ms and holds /hang until
// the client goes away (or 30 s).
func slowTarget(t *testing.T) *target {
	tg := &target{hits: map[string]int{}}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		tg.hits[r.URL.Path]++
		tg.mu.Unlock()
		var wait time.Duration
		switch {
		case strings.HasSuffix(r.URL.Path, "/slow"):
			wait = 200 * time.Millisecond
		case strings.HasSuffix(r.URL.Path, "/hang"):
			wait = 30 * time.Second
		}
		if wait > 0 {
			tm := time.NewTimer(wait)
			defer tm.Stop()
			select {
			case <-r.Context().Done():
				return
			case <-tm.C:
			}
		}
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}))
	t.Cleanup(tg.Close)
	return tg
}

// afterRollback are the run's test.* events after its first rollback.requested
// or rollback.started.
func afterRollback(evs []*runbookv1.Event) []string {
	var out []string
	seen := false
	for _, e := range evs {
		switch t := e.GetType(); {
		case t == "rollback.requested" || t == "rollback.started":
			seen = true
		case seen && strings.HasPrefix(t, "test."):
			out = append(out, t)
		}
	}
	return out
}

// waitOutcome polls the run's test.passed / test.failed (LastEvent: no
// consumer per poll) and returns when it was seen.
func (h *harness) waitOutcome(run string, d time.Duration) time.Time {
	h.t.Helper()
	natstest.Eventually(h.t, d, run+" test outcome", func() bool {
		for _, typ := range []string{"test.passed", "test.failed"} {
			if e, err := h.bus.LastEvent(context.Background(), run, typ); err == nil && e != nil {
				return true
			}
		}
		return false
	})
	return time.Now()
}

func TestRollbackStopsTheTests(t *testing.T) {
	t.Parallel()
	h := startLoad(t, tester.Options{}, slowTarget(t))

	t.Run("rollback.started during a slow load test", func(t *testing.T) {
		h.submit("slowload", `
change_request: {id: CR-S-1, title: rolled back during the load test}
test:
  smoke: [{name: API Health, request: {url: "{{URL}}/fast"}}]
  load:
    vus: 4
    duration: 60s
    think_time: 0s
    requests: [{url: "{{URL}}/slow"}]
    gates: {p95_ms: 2100, error_rate: 0.01}
`)
		h.deployDone("slowload")
		natstest.Eventually(t, 20*time.Second, "slowload load progress", func() bool {
			e, err := h.bus.LastEvent(context.Background(), "slowload", "test.load.progress")
			return err == nil && e != nil && e.Event.GetTestLoadProgress().GetRequests() > 0
		})
		t0 := time.Now()
		h.publish(eventbus.New("slowload", &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{
			RequestedBy: "monitor", Reason: "error_rate 0.3 > 0.015"}}))
		took := h.waitOutcome("slowload", 10*time.Second).Sub(t0)
		if took > 2*time.Second {
			t.Errorf("the load test stopped %v after rollback.started, want within 2s", took)
		}
		t.Logf("load test stopped %v after rollback.started", took)
		evs := h.history("slowload")
		if got := afterRollback(evs); len(got) != 1 || got[0] != "test.failed" {
			t.Errorf("test events after rollback.started: %v, want only the stopped outcome", got)
		}
		for _, typ := range []string{"test.load.passed", "test.load.failed", "test.passed"} {
			if find(evs, typ) != nil {
				t.Errorf("%s published: %v", typ, types(evs))
			}
		}
		if n := len(filter(evs, "rollback.requested")); n != 0 {
			t.Errorf("the tester asked for a rollback already under way")
		}
		if find(evs, "test.smoke.passed") == nil {
			t.Errorf("the smoke suite that completed before the rollback is missing: %v", types(evs))
		}
		o := find(evs, "test.failed").GetTestFailed()
		if o.GetStopped() != "rollback started by monitor: error_rate 0.3 > 0.015" ||
			o.GetReason() != "stopped: rollback started by monitor: error_rate 0.3 > 0.015" || o.GetPassed() != 1 || o.GetFailed() != 0 || o.GetRollbackRequested() {
			t.Errorf("outcome %v", o)
		}
		l := o.GetLoad()
		if l.GetRequests() == 0 || l.GetP95Ms() < 150 || l.GetDurationMs() < 1000 || l.GetDurationMs() > 30_000 ||
			!strings.Contains(l.GetReason(), "gates not judged: rollback started by monitor") || l.GetGateP95Ms() != 2100 {
			t.Errorf("partial load result %v", l)
		}
	})

	t.Run("rollback.requested during the smoke suite", func(t *testing.T) {
		h.submit("slowsmoke", `
change_request: {id: CR-S-2, title: rolled back during the smoke suite}
test:
  smoke:
    - {name: API Health, request: {url: "{{URL}}/fast"}}
    - {name: Hanging, request: {url: "{{URL}}/hang"}}
    - {name: Never Sent, request: {url: "{{URL}}/fast2"}}
  load: {vus: 1, duration: 1s, requests: [{url: "{{URL}}/fast"}]}
`)
		h.deployDone("slowsmoke")
		natstest.Eventually(t, 20*time.Second, "the hanging smoke test to be sent", func() bool {
			return h.tg.count("/slowsmoke/hang") == 1
		})
		t0 := time.Now()
		h.publish(eventbus.New("slowsmoke", &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{
			RequestedBy: "operator", Reason: "bad release"}}, "operator"))
		if took := h.waitOutcome("slowsmoke", 10*time.Second).Sub(t0); took > 2*time.Second {
			t.Errorf("the smoke suite stopped %v after rollback.requested, want within 2s", took)
		}
		evs := h.history("slowsmoke")
		if got := afterRollback(evs); len(got) != 1 || got[0] != "test.failed" {
			t.Errorf("test events after rollback.requested: %v, want only the stopped outcome", got)
		}
		o := find(evs, "test.failed").GetTestFailed()
		sm := o.GetSmoke()
		if o.GetStopped() != "rollback started by operator: bad release" || o.GetSmokeNotRun() != 2 || o.GetLoad() != nil ||
			len(sm.GetTests()) != 1 || sm.GetTests()[0].GetName() != "API Health" || sm.GetPassed() != 1 || o.GetPassed() != 1 || o.GetFailed() != 0 {
			t.Errorf("outcome %v", o)
		}
		if h.tg.count("/slowsmoke/fast2") != 0 || find(evs, "test.smoke.passed") != nil || find(evs, "test.smoke.failed") != nil ||
			find(evs, "test.load.progress") != nil {
			t.Errorf("tests went on after the rollback: %v", types(evs))
		}
	})

	t.Run("redelivery after the rollback began", func(t *testing.T) {
		// The tester died mid-test; the rollback began meanwhile; deploy.done
		// comes again: the phase ends stopped, nothing re-runs.
		h.submit("redeliver", `
change_request: {id: CR-S-3, title: redelivered}
test:
  smoke: [{name: API Health, request: {url: "{{URL}}/fast"}}]
`)
		h.publish(eventbus.New("redeliver", &runbookv1.Event_TestStarted{TestStarted: &runbookv1.TestStarted{SmokeTests: 1}}))
		h.publish(eventbus.New("redeliver", &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{RequestedBy: "monitor", Reason: "p95"}}))
		h.deployDone("redeliver")
		h.waitOutcome("redeliver", 10*time.Second)
		evs := h.history("redeliver")
		if o := find(evs, "test.failed").GetTestFailed(); o.GetStopped() != "rollback started by monitor: p95" || h.tg.count("/redeliver/fast") != 0 {
			t.Errorf("outcome %v events %v", o, types(evs))
		}
	})
}
