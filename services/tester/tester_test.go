package tester_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/tester"
)

const secret = "Bearer s3cr3t-never-in-events"

// target is the release under test: every path counts its hits.
type target struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newTarget(t *testing.T) *target {
	tg := &target{hits: map[string]int{}}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		tg.hits[r.URL.Path]++
		tg.mu.Unlock()
		name := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
		switch name {
		case "health":
			_, _ = io.WriteString(w, `{"status":"ok","version":"2.0.0"}`)
		case "estimate":
			if r.Method != http.MethodPost || r.Header.Get("Authorization") != secret || r.Header.Get("Content-Type") != "application/json" {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"estimateId":"EST-1","items":[{"code":"TEST_001"}]}`)
		default: // "broken"
			http.Error(w, `{"error":"boom"}`, http.StatusInternalServerError)
		}
	}))
	t.Cleanup(tg.Close)
	return tg
}

func (tg *target) count(path string) int {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.hits[path]
}

type harness struct {
	t   *testing.T
	bus *eventbus.Bus
	reg *prometheus.Registry
	tg  *target
}

func start(t *testing.T) *harness {
	t.Helper()
	return startEnv(t, nil)
}

// startEnv starts the tester with ESTIMATOR_TOKEN and env in its
// environment.
func startEnv(t *testing.T, env map[string]string) *harness {
	t.Helper()
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	reg := prometheus.NewRegistry()
	lookup := func(name string) (string, bool) {
		if name == "ESTIMATOR_TOKEN" {
			return secret, true
		}
		v, ok := env[name]
		return v, ok
	}
	svc := tester.New(bus, tester.Options{
		LookupEnv: lookup,
		Consumer:  eventbus.ConsumerOptions{Backoff: []time.Duration{50 * time.Millisecond}},
	}, slog.New(slog.DiscardHandler), eventbus.NewMetrics(reg), reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("service: %v", err)
		}
	})
	return &harness{t: t, bus: bus, reg: reg, tg: newTarget(t)}
}

func (h *harness) publish(ev *runbookv1.Event) uint64 {
	h.t.Helper()
	seq, err := h.bus.Publish(context.Background(), ev)
	if err != nil {
		h.t.Fatalf("publish %s: %v", ev.GetType(), err)
	}
	return seq
}

// submit records the run's plan; the YAML's {{URL}} is the target.
func (h *harness) submit(run, yaml string) {
	h.t.Helper()
	yaml = strings.ReplaceAll(yaml, "{{URL}}", h.tg.URL+"/"+run)
	h.publish(eventbus.New(run, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		PlanYaml: yaml, PlanSource: run + ".yaml", ChangeId: "CR-" + run,
	}}))
}

func (h *harness) deployDone(run string, parts ...any) uint64 {
	h.t.Helper()
	return h.publish(eventbus.New(run, &runbookv1.Event_DeployDone{DeployDone: &runbookv1.DeployFinished{StepsSucceeded: 1}}, parts...))
}

func (h *harness) history(run string) []*runbookv1.Event {
	h.t.Helper()
	envs, err := h.bus.RunHistory(context.Background(), run)
	if err != nil {
		h.t.Fatal(err)
	}
	out := make([]*runbookv1.Event, len(envs))
	for i, e := range envs {
		out[i] = e.Event
	}
	return out
}

func types(evs []*runbookv1.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.GetType())
	}
	return out
}

func find(evs []*runbookv1.Event, typ string) *runbookv1.Event {
	for _, e := range evs {
		if e.GetType() == typ {
			return e
		}
	}
	return nil
}

// waitFor waits for one of the final types in the run's history.
func (h *harness) waitFor(run string, final ...string) []*runbookv1.Event {
	h.t.Helper()
	var evs []*runbookv1.Event
	natstest.Eventually(h.t, 20*time.Second, run+" to reach "+strings.Join(final, "|"), func() bool {
		evs = h.history(run)
		for _, f := range final {
			if find(evs, f) != nil {
				return true
			}
		}
		return false
	})
	return evs
}

// waitAcked waits until the tester has acked everything up to seq.
func (h *harness) waitAcked(seq uint64) {
	h.t.Helper()
	natstest.Eventually(h.t, 20*time.Second, fmt.Sprintf("tester to ack seq %d", seq), func() bool {
		c, err := h.bus.JetStream().Consumer(context.Background(), eventbus.AuditStream, tester.Durable)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.AckFloor.Stream >= seq && info.NumAckPending == 0
	})
}

// order asserts that want appear in evs in this order.
func order(t *testing.T, evs []*runbookv1.Event, want ...string) {
	t.Helper()
	got := types(evs)
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	if i != len(want) {
		t.Fatalf("events %v; want in order %v", got, want)
	}
}

func noSecret(t *testing.T, evs []*runbookv1.Event) {
	t.Helper()
	for _, e := range evs {
		b, _ := protojson.Marshal(e)
		if strings.Contains(string(b), "s3cr3t") {
			t.Fatalf("secret header value written into %s: %s", e.GetType(), b)
		}
	}
}

const passingPlan = `
change_request: {id: CR-T-1, title: tester passes}
test:
  secret_hosts: [127.0.0.1]   # the test target: ESTIMATOR_TOKEN may go there
  smoke:
    - name: API Health
      request: {url: "{{URL}}/health"}
      expect: {status: 200, max_ms: 2100, json: {status: ok, version: "*"}}
    - name: Estimate Creation
      type: regression
      request:
        method: POST
        url: "{{URL}}/estimate"
        json: {customerId: test_customer, estimateItems: [{category: HARDWARE, itemCode: TEST_001, quantity: 1}]}
        headers_env: {Authorization: ESTIMATOR_TOKEN}
      expect: {status: 201, json: {estimateId: "*", items.0.code: TEST_001}}
  load:
    vus: 2
    duration: 1s
    think_time: 100ms
    requests:
      - {url: "{{URL}}/health"}
      - {method: POST, url: "{{URL}}/estimate", json: {customerId: c}, headers_env: {Authorization: ESTIMATOR_TOKEN}}
    gates: {p95_ms: 2100, error_rate: 0.01}
`

func TestTester(t *testing.T) {
	t.Parallel()
	h := start(t)

	h.submit("pass", passingPlan)
	h.submit("smokefail", strings.ReplaceAll(passingPlan, "{{URL}}/estimate", "{{URL}}/broken"))
	h.submit("loadfail", `
change_request: {id: CR-T-3, title: load fails}
test:
  load:
    vus: 2
    duration: 1s
    think_time: 100ms
    requests: [{url: "{{URL}}/health"}, {url: "{{URL}}/broken"}]
`)
	h.submit("keep", `
change_request: {id: CR-T-4, title: no rollback wanted}
test:
  rollback_on_failure: false
  smoke: [{name: Broken, request: {url: "{{URL}}/broken"}}]
`)
	h.submit("none", "change_request: {id: CR-T-5, title: nothing to test}\n")
	h.submit("rolledback", passingPlan)
	h.publish(eventbus.New("rolledback", &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{RequestedBy: "monitor"}}))
	// A tester that died after its smoke suite: the suite is not re-run.
	// (Its own change id: with pass's, each would be the other's regression
	// baseline, two load tests run at the same time on a loaded machine.)
	h.submit("resume", strings.Replace(passingPlan, "id: CR-T-1,", "id: CR-T-7,", 1))
	h.publish(eventbus.New("resume", &runbookv1.Event_TestStarted{TestStarted: &runbookv1.TestStarted{SmokeTests: 2, LoadTest: true}}))
	h.publish(eventbus.New("resume", &runbookv1.Event_TestSmokePassed{TestSmokePassed: &runbookv1.TestSuiteResult{
		Tests: []*runbookv1.TestCase{{Name: "API Health", Type: "smoke", Status: "PASS"}, {Name: "Estimate Creation", Type: "regression", Status: "PASS"}}, Passed: 2,
	}}))

	// A rollback that starts while the load test runs ends the test phase.
	h.submit("abort", `
change_request: {id: CR-T-6, title: rolled back meanwhile}
test:
  load: {vus: 2, duration: 30s, think_time: 100ms, requests: [{url: "{{URL}}/health"}]}
`)

	seqs := map[string]uint64{}
	for _, run := range []string{"pass", "smokefail", "loadfail", "keep", "none", "rolledback", "resume", "abort"} {
		seqs[run] = h.deployDone(run)
	}

	t.Run("rollback during the load test", func(t *testing.T) {
		h.waitFor("abort", "test.load.progress")
		h.publish(eventbus.New("abort", &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{RequestedBy: "monitor"}}))
		h.waitAcked(seqs["abort"])
		evs := h.history("abort")
		for _, typ := range []string{"test.load.passed", "test.load.failed", "test.passed", "rollback.requested"} {
			if find(evs, typ) != nil {
				t.Fatalf("%s published after the rollback started: %v", typ, types(evs))
			}
		}
		if o := find(evs, "test.failed").GetTestFailed(); o.GetStopped() != "rollback started by monitor" || o.GetLoad() == nil {
			t.Fatalf("outcome %v, want the stopped one with the partial load test", o)
		}
	})

	t.Run("passing target", func(t *testing.T) {
		evs := h.waitFor("pass", "test.passed", "test.failed")
		order(t, evs, "deploy.done", "test.started", "test.smoke.passed", "test.load.progress", "test.load.passed", "test.passed")
		if find(evs, "rollback.requested") != nil {
			t.Fatalf("rollback requested for a passing run: %v", types(evs))
		}
		smoke := find(evs, "test.smoke.passed").GetTestSmokePassed()
		if smoke.GetPassed() != 2 || smoke.GetFailed() != 0 || len(smoke.GetTests()) != 2 {
			t.Fatalf("smoke %v", smoke)
		}
		c0, c1 := smoke.GetTests()[0], smoke.GetTests()[1]
		if c0.GetName() != "API Health" || c0.GetType() != "smoke" || c0.GetStatus() != "PASS" ||
			!strings.Contains(c0.GetDetails(), "Response time: ") || !strings.Contains(c0.GetDetails(), "(threshold: 2100ms)") {
			t.Errorf("case 0 %v", c0)
		}
		if c1.GetType() != "regression" || !strings.Contains(c1.GetDetails(), "estimateId=EST-1") || !strings.HasPrefix(c1.GetDetails(), "HTTP 201") {
			t.Errorf("case 1 %v", c1)
		}
		load := find(evs, "test.load.passed").GetTestLoadPassed()
		if load.GetVus() != 2 || load.GetRequests() < 4 || load.GetErrors() != 0 || load.GetP95Ms() <= 0 || load.GetRps() <= 0 ||
			load.GetGateP95Ms() != 2100 || load.GetGateErrorRate() != 0.01 || load.GetDurationMs() < 1000 || load.GetReason() != "" {
			t.Errorf("load %v", load)
		}
		prog := find(evs, "test.load.progress")
		if prog.GetId() != "pass/test.load.progress/1" || prog.GetTestLoadProgress().GetRequests() == 0 {
			t.Errorf("progress %v", prog)
		}
		out := find(evs, "test.passed")
		if o := out.GetTestPassed(); o.GetPassed() != 3 || o.GetFailed() != 0 || o.GetRollbackRequested() || o.GetReason() != "3 of 3 tests passed" {
			t.Errorf("outcome %v", o)
		}
		if out.GetId() != "pass/"+tester.TestOutcomeID || out.GetCausationId() != find(evs, "deploy.done").GetId() {
			t.Errorf("outcome id %q causation %q", out.GetId(), out.GetCausationId())
		}
		noSecret(t, evs)
	})

	t.Run("a path answering 500", func(t *testing.T) {
		evs := h.waitFor("smokefail", "test.passed", "test.failed")
		order(t, evs, "test.started", "test.smoke.failed", "rollback.requested", "test.failed")
		if find(evs, "test.load.passed") != nil || find(evs, "test.load.failed") != nil || h.tg.count("/smokefail/health") != 1 {
			t.Errorf("load test ran after failed smoke tests: %v", types(evs))
		}
		smoke := find(evs, "test.smoke.failed").GetTestSmokeFailed()
		if smoke.GetPassed() != 1 || smoke.GetFailed() != 1 {
			t.Fatalf("smoke %v", smoke)
		}
		if c := smoke.GetTests()[1]; c.GetStatus() != "FAIL" || !strings.Contains(c.GetError(), "HTTP 500 (expected 201)") || !strings.Contains(c.GetError(), "field estimateId is missing") {
			t.Errorf("failed case %v", c)
		}
		rb := find(evs, "rollback.requested")
		if rb.GetId() != "smokefail/rollback.requested/tester" || rb.GetRollbackRequested().GetRequestedBy() != "tester" ||
			!strings.Contains(rb.GetRollbackRequested().GetReason(), "Estimate Creation") {
			t.Errorf("rollback %v", rb)
		}
		o := find(evs, "test.failed").GetTestFailed()
		if !o.GetRollbackRequested() || o.GetFailed() != 1 || o.GetPassed() != 1 || !strings.Contains(o.GetReason(), "1 of 2 smoke tests failed: Estimate Creation (HTTP 500") {
			t.Errorf("outcome %v", o)
		}
	})

	t.Run("load gate broken", func(t *testing.T) {
		evs := h.waitFor("loadfail", "test.passed", "test.failed")
		order(t, evs, "test.started", "test.load.failed", "rollback.requested", "test.failed")
		l := find(evs, "test.load.failed").GetTestLoadFailed()
		if l.GetErrorRate() < 0.4 || !strings.Contains(l.GetReason(), "error rate") {
			t.Errorf("load %v", l)
		}
		rb := find(evs, "rollback.requested").GetRollbackRequested()
		if rb.GetMetric() != "error_rate" || rb.GetThreshold() != 0.01 || rb.GetValue() < 0.4 {
			t.Errorf("rollback %v", rb)
		}
	})

	t.Run("rollback_on_failure false", func(t *testing.T) {
		evs := h.waitFor("keep", "test.passed", "test.failed")
		if find(evs, "rollback.requested") != nil || find(evs, "test.failed").GetTestFailed().GetRollbackRequested() {
			t.Errorf("rollback requested although the plan says no: %v", types(evs))
		}
	})

	t.Run("no tests", func(t *testing.T) {
		evs := h.waitFor("none", "test.passed", "test.failed")
		o := find(evs, "test.passed")
		if o == nil || o.GetTestPassed().GetReason() != "no tests in the plan" || find(evs, "test.started") != nil {
			t.Errorf("events %v outcome %v", types(evs), o)
		}
	})

	t.Run("rollback already started", func(t *testing.T) {
		seq := h.deployDone("rolledback", "again") // acked after the first one too
		h.waitAcked(seq)
		evs := h.history("rolledback")
		for _, e := range evs {
			if strings.HasPrefix(e.GetType(), "test.") {
				t.Fatalf("tested a run being rolled back: %v", types(evs))
			}
		}
		if h.tg.count("/rolledback/health") != 0 {
			t.Error("target hit")
		}
	})

	t.Run("resumes after the smoke suite", func(t *testing.T) {
		evs := h.waitFor("resume", "test.passed", "test.failed")
		if find(evs, "test.passed") == nil || find(evs, "test.load.passed") == nil {
			t.Fatalf("events %v; load failed: %q", types(evs), find(evs, "test.load.failed").GetTestLoadFailed().GetReason())
		}
		if n := len(filter(evs, "test.smoke.passed")); n != 1 {
			t.Errorf("%d smoke results", n)
		}
		if h.tg.count("/resume/health") == 0 {
			t.Error("load test did not run")
		}
		// Only the load test hit /estimate: its one POST per iteration (an
		// iteration the test's end cuts between its GET and its POST sends
		// no POST). A re-run smoke suite would hit it more often than that.
		if got, iters := h.tg.count("/resume/estimate"), h.tg.count("/resume/health"); got > iters || got < iters-1 {
			t.Errorf("estimate hit %d times for %d load iterations: the smoke suite re-ran", got, iters)
		}
	})

	t.Run("redelivery does nothing", func(t *testing.T) {
		before := h.history("pass")
		hits := h.tg.count("/pass/health")
		seq := h.deployDone("pass", "again")
		h.waitAcked(seq)
		after := h.history("pass")
		if len(after) != len(before)+1 || h.tg.count("/pass/health") != hits {
			t.Errorf("redelivered deploy.done re-tested: %v", types(after[len(before):]))
		}
	})

	t.Run("metrics", func(t *testing.T) {
		mfs, err := h.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				key := mf.GetName()
				for _, l := range m.GetLabel() {
					key += "," + l.GetName() + "=" + l.GetValue()
				}
				got[key] += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
			}
		}
		for _, k := range []string{
			"runbook_tester_tests_total,status=PASS,type=smoke",
			"runbook_tester_tests_total,status=FAIL,type=regression",
			"runbook_tester_tests_total,status=PASS,type=load",
			"runbook_tester_tests_total,status=FAIL,type=load",
			"runbook_tester_load_requests_total,outcome=ok",
			"runbook_tester_load_requests_total,outcome=error",
			"runbook_tester_load_request_duration_seconds",
		} {
			if got[k] == 0 {
				t.Errorf("metric %s not recorded", k)
			}
		}
	})
}

func filter(evs []*runbookv1.Event, typ string) []*runbookv1.Event {
	var out []*runbookv1.Event
	for _, e := range evs {
		if e.GetType() == typ {
			out = append(out, e)
		}
	}
	return out
}
