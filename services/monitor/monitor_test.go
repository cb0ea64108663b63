package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/monitor/rules"
)

// target is a real HTTP service whose behaviour a test flips.
type target struct {
	*httptest.Server
	mode atomic.Value // "good", "failing", "slow"
}

func newTarget(t *testing.T) *target {
	tg := &target{}
	tg.mode.Store("good")
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch tg.mode.Load() {
		case "failing":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "slow":
			select {
			case <-time.After(220 * time.Millisecond):
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(tg.Close)
	return tg
}

type env struct {
	bus *eventbus.Bus
	svc *Service
	reg *prometheus.Registry
}

// start runs a monitor in-process against a fresh embedded JetStream.
func start(t *testing.T) *env {
	t.Helper()
	srv := natstest.Server(t)
	bus := natstest.Bus(t, srv, "monitor-test")
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	svc := New(bus, Options{}, log, eventbus.NewMetrics(reg), reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &env{bus: bus, svc: svc, reg: reg}
}

func planYAML(monitor string) string {
	return `change_request: {id: CR-2025-001, title: monitor test, type: enhancement, priority: low}
requester: {name: Test, role: SRE, contact: sre@example.com}
description: {summary: watch the window}
` + monitor
}

func probePlan(url, extra string) string {
	return planYAML(fmt.Sprintf(`monitor:
  window: 3s
  interval: 300ms
  sources:
    - http_probe: {url: %q, requests: 4}
%s`, url, extra))
}

func publish(t *testing.T, bus *eventbus.Bus, ev *runbookv1.Event) *runbookv1.Event {
	t.Helper()
	if _, err := bus.Publish(context.Background(), ev); err != nil {
		t.Fatalf("publish %s: %v", ev.Type, err)
	}
	return ev
}

// submit publishes the run's change.requested, deploy.started and, the
// deploy done at once, deploy.done.
func submit(t *testing.T, bus *eventbus.Bus, run, yaml string) {
	t.Helper()
	submitDeploying(t, bus, run, yaml)
	deployDone(t, bus, run, time.Now())
}

// submitDeploying publishes the run's change.requested and deploy.started:
// the deploy runs until the test publishes deploy.done.
func submitDeploying(t *testing.T, bus *eventbus.Bus, run, yaml string) *runbookv1.Event {
	t.Helper()
	publish(t, bus, eventbus.New(run, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		PlanYaml: yaml, PlanSource: "test.yaml", ChangeId: "CR-2025-001",
	}}))
	return publish(t, bus, eventbus.New(run, &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}}))
}

// deployDone publishes the run's deploy.done, stamped at.
func deployDone(t *testing.T, bus *eventbus.Bus, run string, at time.Time) *runbookv1.Event {
	t.Helper()
	ev := eventbus.New(run, &runbookv1.Event_DeployDone{DeployDone: &runbookv1.DeployFinished{StepsSucceeded: 1}})
	ev.Time = timestamppb.New(at)
	return publish(t, bus, ev)
}

func runHistory(t *testing.T, bus *eventbus.Bus, run string) []eventbus.Envelope {
	t.Helper()
	h, err := bus.RunHistory(context.Background(), run)
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	return h
}

func ofType(h []eventbus.Envelope, typ string) []*runbookv1.Event {
	var out []*runbookv1.Event
	for _, e := range h {
		if e.Event.Type == typ {
			out = append(out, e.Event)
		}
	}
	return out
}

func waitFor(t *testing.T, bus *eventbus.Bus, run, typ string, d time.Duration) *runbookv1.Event {
	t.Helper()
	var ev *runbookv1.Event
	natstest.Eventually(t, d, run+" "+typ, func() bool {
		env, err := bus.LastEvent(context.Background(), run, typ)
		if err != nil {
			t.Fatalf("last %s: %v", typ, err)
		}
		if env != nil {
			ev = env.Event
		}
		return ev != nil
	})
	return ev
}

func types(h []eventbus.Envelope) []string {
	var out []string
	for _, e := range h {
		out = append(out, e.Event.Type)
	}
	return out
}

func TestGoodTargetWatchesTheWholeWindow(t *testing.T) {
	t.Parallel()
	e := start(t)
	tg := newTarget(t)
	run := "DEPLOY-20250922-143000-good"
	submit(t, e.bus, run, probePlan(tg.URL+"/health", ""))

	done := waitFor(t, e.bus, run, "monitor.completed", 15*time.Second)
	h := runHistory(t, e.bus, run)
	if n := len(ofType(h, "rollback.requested")); n != 0 {
		t.Errorf("rollback.requested ×%d for a good target; history %v", n, types(h))
	}
	if n := len(ofType(h, "threshold.violated")); n != 0 {
		t.Errorf("threshold.violated ×%d for a good target", n)
	}
	started := ofType(h, "monitor.started")
	if len(started) != 1 {
		t.Fatalf("monitor.started ×%d; want 1; history %v", len(started), types(h))
	}
	ms := started[0].GetMonitorStarted()
	if ms.Window != "3s" || ms.Interval != "300ms" || len(ms.Baseline) != 2 {
		t.Errorf("monitor.started = %v; want window 3s, interval 300ms, a baseline of p95 and error rate", ms)
	}
	if started[0].CausationId != ofType(h, "deploy.started")[0].Id {
		t.Errorf("monitor.started is not caused by deploy.started")
	}
	mc := done.GetMonitorCompleted()
	if mc.RollbackRequested || mc.Violations != 0 || !strings.Contains(mc.Reason, "watch window of 3s ended") {
		t.Errorf("monitor.completed = %v", mc)
	}
	// Ten ticks of two metrics; allow a skipped tick on a busy machine.
	if mc.Samples < 12 || mc.Last[rules.MetricErrorRate] != 0 || mc.Max[rules.MetricP95] <= 0 {
		t.Errorf("monitor.completed = %v; want ~20 samples, error rate 0, a p95", mc)
	}
	if done.Id != eventbus.ID(run, "monitor.completed") {
		t.Errorf("monitor.completed id = %q", done.Id)
	}
	opened := ofType(h, "deploy.done")[0].Time.AsTime()
	if elapsed := done.Time.AsTime().Sub(opened); elapsed < 3*time.Second {
		t.Errorf("window closed %s after deploy.done; want the full 3s", elapsed)
	}
	if !mc.WindowOpened.AsTime().Equal(opened) || ms.JudgeFrom != "deploy_done" {
		t.Errorf("window opened at %v, judged from %q; want deploy.done's time %v", mc.WindowOpened.AsTime(), ms.JudgeFrom, opened)
	}
	if got := testutil.ToFloat64(e.svc.met.samples.WithLabelValues("http_probe", rules.MetricErrorRate)); got < 6 {
		t.Errorf("samples metric = %v", got)
	}
}

func TestBadTargetRollsBackOnceAndStopsEarly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mode, extra, metric string
	}{
		{"failing", "", rules.MetricErrorRate},
		// 220ms answers against a 100ms p95 threshold (rollback above 150ms).
		{"slow", "  thresholds: {api_response_time_p95: 100}\n", rules.MetricP95},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			e := start(t)
			tg := newTarget(t)
			run := "DEPLOY-20250922-143000-" + tc.mode
			submit(t, e.bus, run, probePlan(tg.URL, tc.extra))
			started := waitFor(t, e.bus, run, "monitor.started", 10*time.Second)
			tg.mode.Store(tc.mode)

			done := waitFor(t, e.bus, run, "monitor.completed", 15*time.Second)
			h := runHistory(t, e.bus, run)
			viol := ofType(h, "threshold.violated")
			rb := ofType(h, "rollback.requested")
			if len(viol) == 0 || len(rb) != 1 {
				t.Fatalf("threshold.violated ×%d, rollback.requested ×%d; want ≥1 and exactly 1; history %v", len(viol), len(rb), types(h))
			}
			r := rb[0].GetRollbackRequested()
			if r.RequestedBy != "monitor" || rb[0].Id != eventbus.ID(run, "rollback.requested", "monitor") {
				t.Errorf("rollback.requested = %v (id %s)", r, rb[0].Id)
			}
			if r.Metric != tc.metric && r.Metric != rules.MetricErrorRate {
				t.Errorf("rollback metric = %s; want %s", r.Metric, tc.metric)
			}
			if !strings.Contains(r.Reason, r.Metric) || !strings.Contains(r.Reason, "150% of its threshold") {
				t.Errorf("reason %q names neither metric nor rule", r.Reason)
			}
			last := viol[len(viol)-1]
			if last.GetThresholdViolated().Severity != rules.SeverityCritical || !last.GetThresholdViolated().AutoRollback {
				t.Errorf("last violation = %v; want CRITICAL on an auto-rollback metric", last.GetThresholdViolated())
			}
			if rb[0].CausationId == "" || !strings.HasPrefix(rb[0].CausationId, run+"/threshold.violated/"+r.Metric+"/") {
				t.Errorf("rollback.requested caused by %q; want its violation", rb[0].CausationId)
			}
			// Order: violation, then the rollback, then the end of the window.
			pos := map[string]int{}
			for i, e := range h {
				if _, seen := pos[e.Event.Type]; !seen {
					pos[e.Event.Type] = i
				}
			}
			if !(pos["threshold.violated"] < pos["rollback.requested"] && pos["rollback.requested"] < pos["monitor.completed"]) {
				t.Errorf("order: %v", types(h))
			}
			mc := done.GetMonitorCompleted()
			if !mc.RollbackRequested || mc.Violations < 1 || !strings.Contains(mc.Reason, "stopped early: rollback requested") {
				t.Errorf("monitor.completed = %v", mc)
			}
			if ended := done.Time.AsTime().Sub(started.Time.AsTime()); ended >= 3*time.Second {
				t.Errorf("window closed after %s; want before the 3s window", ended)
			}
			if got := testutil.ToFloat64(e.svc.met.rollbacks); got != 1 {
				t.Errorf("rollbacks metric = %v; want 1", got)
			}
		})
	}
}

func TestPlanWithoutSourcesCompletesAtOnce(t *testing.T) {
	t.Parallel()
	e := start(t)
	run := "DEPLOY-20250922-143000-none"
	submit(t, e.bus, run, planYAML(""))
	done := waitFor(t, e.bus, run, "monitor.completed", 10*time.Second)
	if got := done.GetMonitorCompleted().Reason; got != ReasonNothingToWatch {
		t.Errorf("reason = %q", got)
	}
	if h := runHistory(t, e.bus, run); len(ofType(h, "monitor.started")) != 0 {
		t.Errorf("monitor.started without sources: %v", types(h))
	}
}

func TestRollbackStartedStopsTheWindow(t *testing.T) {
	t.Parallel()
	e := start(t)
	tg := newTarget(t)
	run := "DEPLOY-20250922-143000-tester"
	submit(t, e.bus, run, probePlan(tg.URL, ""))
	started := waitFor(t, e.bus, run, "monitor.started", 10*time.Second)
	// The tester asked for a rollback and the deployer began it.
	publish(t, e.bus, eventbus.New(run, &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{
		Reason: "smoke test failed", RequestedBy: "tester",
	}}))
	done := waitFor(t, e.bus, run, "monitor.completed", 10*time.Second)
	mc := done.GetMonitorCompleted()
	if mc.RollbackRequested || !strings.Contains(mc.Reason, "rollback started (requested by tester)") {
		t.Errorf("monitor.completed = %v", mc)
	}
	if ended := done.Time.AsTime().Sub(started.Time.AsTime()); ended >= 3*time.Second {
		t.Errorf("window closed after %s; want early", ended)
	}
	if h := runHistory(t, e.bus, run); len(ofType(h, "rollback.requested")) != 0 {
		t.Errorf("the monitor asked for a rollback of its own: %v", types(h))
	}
}

// A run that failed with nothing to undo (run.failed) is over: the window
// closes early, as for a rollback, and the monitor asks for nothing.
func TestRunFailedStopsTheWindow(t *testing.T) {
	t.Parallel()
	e := start(t)
	tg := newTarget(t)
	run := "DEPLOY-20250922-143000-failed"
	submit(t, e.bus, run, probePlan(tg.URL, ""))
	started := waitFor(t, e.bus, run, "monitor.started", 10*time.Second)
	publish(t, e.bus, eventbus.New(run, &runbookv1.Event_RunFailed{RunFailed: &runbookv1.RunEnded{
		Reason: "no rollback steps: nothing was undone — manual action needed; rollback requested: smoke test failed",
	}}))
	done := waitFor(t, e.bus, run, "monitor.completed", 10*time.Second)
	mc := done.GetMonitorCompleted()
	if mc.RollbackRequested || !strings.Contains(mc.Reason, "stopped: the run failed: no rollback steps") {
		t.Errorf("monitor.completed = %v", mc)
	}
	if ended := done.Time.AsTime().Sub(started.Time.AsTime()); ended >= 3*time.Second {
		t.Errorf("window closed after %s; want early", ended)
	}
}

// The handler called again (redelivery after a crash) continues the window
// of the run's monitor.started instead of starting a new one, and leaves a
// completed window alone. These call the handler directly, as the router
// would on redelivery.
func TestRedeliveryContinuesTheSameWindow(t *testing.T) {
	t.Parallel()
	srv := natstest.Server(t)
	bus := natstest.Bus(t, srv, "monitor-test")
	svc := New(bus, Options{}, slog.New(slog.NewTextHandler(t.Output(), nil)), nil, prometheus.NewRegistry())
	tg := newTarget(t)
	ctx := context.Background()

	// A window that started 10s ago (3s long) is over and nobody watched
	// it: it fails closed at once (the monitor was down 9s, more than the
	// one window it may make up), without a second monitor.started or a
	// new baseline.
	run := "DEPLOY-20250922-143000-resume"
	submitDeploying(t, bus, run, probePlan(tg.URL, ""))
	old := eventbus.New(run, &runbookv1.Event_MonitorStarted{MonitorStarted: &runbookv1.MonitorStarted{Window: "3s", Interval: "300ms"}})
	old.Time = timestamppb.New(time.Now().Add(-10 * time.Second))
	publish(t, bus, old)
	deployDone(t, bus, run, time.Now().Add(-9*time.Second))
	publish(t, bus, eventbus.New(run, &runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{
		Metric: rules.MetricP95, Value: 2500, Threshold: 2100, Severity: rules.SeverityWarning,
	}}, rules.MetricP95, 3))
	ds := ofType(runHistory(t, bus, run), "deploy.started")[0]
	begin := time.Now()
	if err := svc.onDeployStarted(ctx, ds, ds.GetDeployStarted()); err != nil {
		t.Fatalf("handler: %v", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("a window that is over took %s to close", took)
	}
	h := runHistory(t, bus, run)
	if n := len(ofType(h, "monitor.started")); n != 1 {
		t.Errorf("monitor.started ×%d; want the original only", n)
	}
	mc := ofType(h, "monitor.completed")
	if len(mc) != 1 || mc[0].GetMonitorCompleted().Violations != 1 || mc[0].GetMonitorCompleted().Max[rules.MetricP95] != 2500 {
		t.Fatalf("monitor.completed = %v; want one, with the violation from before the restart", mc)
	}
	if c := mc[0].GetMonitorCompleted(); !c.RollbackRequested || !strings.HasPrefix(c.Reason, "not watched: monitor down for ") ||
		c.ObservedMs != 0 || c.WindowMs != 3000 || c.MissedTicks != 10 || c.DownMs < 8500 || c.DownMs > 10500 {
		t.Errorf("monitor.completed = %v; want not watched: 0 of 3000 ms observed, 10 ticks missed, down about 9s, the rollback asked for", c)
	}
	if rr := ofType(h, "rollback.requested"); len(rr) != 1 || rr[0].GetRollbackRequested().GetReason() != mc[0].GetMonitorCompleted().Reason {
		t.Errorf("rollback.requested = %v; want one: %s", rr, mc[0].GetMonitorCompleted().Reason)
	}

	// Called again once completed: nothing new.
	if err := svc.onDeployStarted(ctx, ds, ds.GetDeployStarted()); err != nil {
		t.Fatalf("handler again: %v", err)
	}
	if again := runHistory(t, bus, run); len(again) != len(h) {
		t.Errorf("a completed window published more: %v", types(again)[len(h):])
	}

	// A window whose rollback the monitor already asked for closes at once.
	run = "DEPLOY-20250922-143000-asked"
	submit(t, bus, run, probePlan(tg.URL, ""))
	publish(t, bus, eventbus.New(run, &runbookv1.Event_MonitorStarted{MonitorStarted: &runbookv1.MonitorStarted{Window: "3s"}}))
	publish(t, bus, eventbus.New(run, &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{
		Reason: "error_rate 100% exceeds 150% of its threshold 1% (limit 1.5%)", RequestedBy: RequestedBy,
	}}, RequestedBy))
	ds = ofType(runHistory(t, bus, run), "deploy.started")[0]
	if err := svc.onDeployStarted(ctx, ds, ds.GetDeployStarted()); err != nil {
		t.Fatalf("handler: %v", err)
	}
	h = runHistory(t, bus, run)
	if mc := ofType(h, "monitor.completed"); len(mc) != 1 || !mc[0].GetMonitorCompleted().RollbackRequested {
		t.Errorf("monitor.completed = %v; want rollback_requested", mc)
	}
	if n := len(ofType(h, "rollback.requested")); n != 1 {
		t.Errorf("rollback.requested ×%d; want the original only", n)
	}
}
