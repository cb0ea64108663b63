package deployer_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// releaseTarget answers 200 {"release":"old"} to its first oldAnswers
// requests (all of them when oldAnswers < 0), then {"release":"new"}: the
// old workers that still answer right after an nginx reload.
func releaseTarget(t *testing.T, oldAnswers int32) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if k := n.Add(1); oldAnswers < 0 || k <= oldAnswers {
			fmt.Fprint(w, `{"release":"old"}`)
			return
		}
		fmt.Fprint(w, `{"release":"new"}`)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// healthStep is the run's health step event of the given outcome
// (deploy.step.succeeded or deploy.step.failed).
func healthStep(t *testing.T, h *harness, run string, succeeded bool) *runbookv1.StepEvent {
	t.Helper()
	hist, err := h.bus.RunHistory(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range hist {
		s := e.Event.GetDeployStepFailed()
		if succeeded {
			s = e.Event.GetDeployStepSucceeded()
		}
		if s != nil && s.GetKind() == "health" {
			return s
		}
	}
	t.Fatalf("%s: no health step event (succeeded %v)", run, succeeded)
	return nil
}

// A health gate with expect json $.release == "new" passes only once the
// new release answers: the old answers before it are failed attempts
// naming the value found, and the step's duration shows the wait.
func TestHealthGateWaitsForTheNewRelease(t *testing.T) {
	t.Parallel()
	h := start(t)
	srv, n := releaseTarget(t, 3)
	p := planWith(h.log, step("one", ""), step("undo", "")) + fmt.Sprintf(`  health:
    - url: "%s/health"
      attempts: 10
      interval: 60ms
      initial_delay: 0s
      expect: {status: 200, json: {$.release: new}, headers: {Content-Type: application/json}}
`, srv.URL)
	h.publish(t, changeRequested("HC1", p), preflightPassed("HC1"))
	h.waitFor(t, "HC1", "deploy.done")
	if got := n.Load(); got != 4 {
		t.Errorf("the target was asked %d times, want 4 (3 old answers, then the new one)", got)
	}
	s := healthStep(t, h, "HC1", true)
	if s.GetDurationMs() < 3*60 {
		t.Errorf("health step took %d ms: it did not wait out the 3 old answers (3 intervals of 60ms)", s.GetDurationMs())
	}
	out := s.GetOutputTail()
	for _, want := range []string{
		`attempt 1/10: ` + srv.URL + `/health: UNHEALTHY: field $.release is "old" (expected "new")`,
		`attempt 3/10: `,
		srv.URL + `/health: HEALTHY (HTTP 200`,
		`$.release=new`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("health output lacks %q:\n%s", want, out)
		}
	}
	if h.count(t, "HC1", "rollback.requested") != 0 {
		t.Error("a health gate that passed asked for a rollback")
	}
}

// A health gate whose assertion never holds fails after its attempts, its
// error naming the assertion and the value found; the run rolls back.
func TestHealthGateAssertionNeverHolds(t *testing.T) {
	t.Parallel()
	h := start(t)
	srv, n := releaseTarget(t, -1)
	p := planWith(h.log, step("one", ""), step("undo", "")) + fmt.Sprintf(`  health:
    - url: "%s/health"
      attempts: 3
      interval: 20ms
      initial_delay: 0s
      expect: {json: {$.release: new}, body_contains: ['"release"']}
`, srv.URL)
	h.publish(t, changeRequested("HC2", p), preflightPassed("HC2"))
	h.waitFor(t, "HC2", "rollback.done")
	if got := n.Load(); got != 3 {
		t.Errorf("the target was asked %d times, want 3 (the gate's attempts)", got)
	}
	want := `UNHEALTHY after 3 attempts: ` + srv.URL + `/health: UNHEALTHY: field $.release is "old" (expected "new")`
	if e := healthStep(t, h, "HC2", false).GetError(); !strings.Contains(e, want) {
		t.Errorf("health step error %q, want it to contain %q", e, want)
	}
	f, _ := h.bus.LastEvent(context.Background(), "HC2", "deploy.failed")
	if f == nil || !strings.Contains(f.Event.GetDeployFailed().GetError(), `field $.release is "old" (expected "new")`) {
		t.Fatalf("deploy.failed does not name the assertion: %+v", f)
	}
	if got := strings.Join(h.ran(t), ","); got != "one,undo" {
		t.Errorf("ran %s, want one,undo", got)
	}
}

// An http step whose response misses an assertion fails the deploy, naming
// the assertion and the value found.
func TestHTTPStepExpectFailsTheDeploy(t *testing.T) {
	t.Parallel()
	h := start(t)
	srv, _ := releaseTarget(t, -1)
	p := planWith(h.log, fmt.Sprintf(`    - name: switch
      http:
        method: GET
        url: "%s/switch"
        expect: {json: {release: new}}
`, srv.URL)+step("after", ""), step("undo", ""))
	h.publish(t, changeRequested("HC3", p), preflightPassed("HC3"))
	h.waitFor(t, "HC3", "rollback.done")
	f, _ := h.bus.LastEvent(context.Background(), "HC3", "deploy.step.failed")
	want := `GET ` + srv.URL + `/switch: field release is "old" (expected "new")`
	if f == nil {
		t.Fatal("no deploy.step.failed")
	}
	if s := f.Event.GetDeployStepFailed(); s.GetName() != "switch" || !strings.Contains(s.GetError(), want) {
		t.Fatalf("deploy.step.failed %+v, want step switch with an error containing %q", f, want)
	}
	if got := strings.Join(h.ran(t), ","); got != "undo" {
		t.Errorf("ran %s, want undo only (the step after the failed http step must not run)", got)
	}
}

// A rollback's wait.until with expect waits until the old release really
// answers — not merely until something answers 200, which the still-running
// workers of the bad release do at once.
func TestRollbackWaitsForTheOldRelease(t *testing.T) {
	t.Parallel()
	h := start(t)
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 3 {
			fmt.Fprint(w, `{"release":"bad"}`)
			return
		}
		fmt.Fprint(w, `{"release":"good"}`)
	}))
	t.Cleanup(srv.Close)
	p := planWith(h.log, step("one", "")+"    - {name: fail, command: {argv: [\"false\"]}}\n", step("undo", "")+fmt.Sprintf(`    - name: old release back
      wait: {until: {url: "%s/health", interval: 50ms, timeout: 10s, expect: {json: {release: good}}}}
`, srv.URL))
	h.publish(t, changeRequested("HC4", p), preflightPassed("HC4"))
	h.waitFor(t, "HC4", "rollback.done")
	ev, _ := h.bus.LastEvent(context.Background(), "HC4", "rollback.step.succeeded")
	if ev == nil {
		t.Fatal("no rollback.step.succeeded")
	}
	s := ev.Event.GetRollbackStepSucceeded()
	if s.GetName() != "old release back" || n.Load() != 4 || s.GetDurationMs() < 3*50 || !strings.Contains(s.GetOutputTail(), "after 4 check(s)") {
		t.Errorf("rollback wait: step %q, %d requests, %d ms, output %q; want it to wait out the 3 bad answers", s.GetName(), n.Load(), s.GetDurationMs(), s.GetOutputTail())
	}
}
