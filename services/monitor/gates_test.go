package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/monitor/rules"
)

// slowTarget answers at once, except the next `slow` requests, which take
// 300ms: with a probe of 4 requests a round, 4 slow requests are one slow
// sample.
type slowTarget struct {
	*httptest.Server
	slow atomic.Int64
}

func newSlowTarget(t *testing.T) *slowTarget {
	tg := &slowTarget{}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tg.slow.Add(-1) >= 0 {
			select {
			case <-time.After(300 * time.Millisecond):
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(tg.Close)
	return tg
}

// runMonitor runs a monitor on bus until the returned stop is called.
func runMonitor(t *testing.T, bus *eventbus.Bus, o Options) (stop func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	svc := New(bus, o, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})), eventbus.NewMetrics(reg), reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// Flapping: with `for: 3 of 5` one slow sample is a CRITICAL violation but
// no rollback, and the window runs to its end; three slow samples roll back.
func TestForNOfMRidesOutOneSpike(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		slow     int64 // slow requests (4 a sample)
		rollback bool
	}{
		{"one slow sample", 4, false},
		{"three slow samples", 12, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := natstest.Server(t)
			bus := natstest.Bus(t, srv, "monitor-test")
			runMonitor(t, bus, Options{})
			tg := newSlowTarget(t)
			run := "DEPLOY-20250922-143000-flap" + fmt.Sprint(tc.slow)
			submit(t, bus, run, planYAML(fmt.Sprintf(`monitor:
  window: 5s
  interval: 500ms
  baseline: 0s
  sources:
    - http_probe: {url: %q, requests: 4}
  gates:
    api_response_time_p95: {max: 100, critical: 150, for: 3 of 5}
`, tg.URL)))
			waitFor(t, bus, run, "monitor.started", 10*time.Second)
			tg.slow.Store(tc.slow)
			done := waitFor(t, bus, run, "monitor.completed", 15*time.Second)
			h := runHistory(t, bus, run)
			var crit int
			for _, v := range ofType(h, "threshold.violated") {
				tv := v.GetThresholdViolated()
				if tv.Metric == rules.MetricP95 && tv.Severity == rules.SeverityCritical {
					crit++
					if tv.WindowSize != 5 || tv.WindowNeeded != 3 {
						t.Errorf("violation window = %d of %d (needs %d); want of 5, needs 3", tv.WindowCritical, tv.WindowSize, tv.WindowNeeded)
					}
				}
			}
			rb := ofType(h, "rollback.requested")
			if !tc.rollback {
				if crit < 1 || len(rb) != 0 || done.GetMonitorCompleted().RollbackRequested {
					t.Fatalf("critical ×%d, rollback.requested ×%d; want ≥1 violation and no rollback; history %v", crit, len(rb), types(h))
				}
				if !strings.Contains(done.GetMonitorCompleted().Reason, "watch window of 5s ended") {
					t.Errorf("reason %q; want the whole window", done.GetMonitorCompleted().Reason)
				}
				return
			}
			if len(rb) != 1 {
				t.Fatalf("rollback.requested ×%d; want 1; history %v", len(rb), types(h))
			}
			r := rb[0].GetRollbackRequested()
			if r.Metric != rules.MetricP95 || r.Rule != "api_response_time_p95 > 150 for 3 of 5 samples" || len(r.WindowValues) < 3 {
				t.Errorf("rollback.requested = %v; want p95, its rule and the window's values", r)
			}
			slow := 0
			for _, v := range r.WindowValues {
				if v > 150 {
					slow++
				}
			}
			if slow != 3 || !strings.Contains(r.Reason, "for 3 of the last 5 samples") {
				t.Errorf("window values %v (%d slow), reason %q; want 3 slow and the window in the reason", r.WindowValues, slow, r.Reason)
			}
		})
	}
}

// scrapeTarget serves a Prometheus histogram with traffic between scrapes
// (10 fast requests each time), until it is stopped.
func scrapeTarget(t *testing.T) *httptest.Server {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := n.Add(10)
		fmt.Fprintf(w, "# TYPE http_request_duration_seconds histogram\n"+
			"http_request_duration_seconds_bucket{le=\"0.05\"} %d\n"+
			"http_request_duration_seconds_bucket{le=\"+Inf\"} %d\n"+
			"http_request_duration_seconds_sum %d\nhttp_request_duration_seconds_count %d\n"+
			"# TYPE http_errors_total counter\nhttp_errors_total 0\n", c, c, c/100, c)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// No data: the target stops answering in the middle of the window; after
// no_data_after missing samples the gate fails closed and rolls back.
func TestTargetThatStopsAnsweringRollsBack(t *testing.T) {
	t.Parallel()
	srv := natstest.Server(t)
	bus := natstest.Bus(t, srv, "monitor-test")
	runMonitor(t, bus, Options{})
	tg := scrapeTarget(t)
	run := "DEPLOY-20250922-143000-nodata"
	submit(t, bus, run, planYAML(fmt.Sprintf(`monitor:
  window: 10s
  interval: 300ms
  baseline: 0s
  sources:
    - prometheus_scrape: {url: %q, latency_histogram: http_request_duration_seconds, errors_counter: http_errors_total}
  gates:
    api_response_time_p95: {max: 2100, no_data_after: 2}
`, tg.URL)))
	started := waitFor(t, bus, run, "monitor.started", 10*time.Second)
	// Let the window see the target answer, then stop it.
	natstest.Eventually(t, 10*time.Second, "samples before the stop", func() bool {
		ss, err := bus.RunSamples(context.Background(), run)
		return err == nil && len(ss) >= 4
	})
	tg.Close()

	rr := waitFor(t, bus, run, "rollback.requested", 10*time.Second).GetRollbackRequested()
	if !rr.NoData || !strings.Contains(rr.Reason, "no data") || !strings.Contains(rr.Reason, "no_data: fail") {
		t.Errorf("rollback.requested = %v; want a no-data rollback that says so", rr)
	}
	done := waitFor(t, bus, run, "monitor.completed", 10*time.Second)
	if d := done.Time.AsTime().Sub(started.Time.AsTime()); d >= 10*time.Second {
		t.Errorf("window ran %s: a target that stopped answering must not pass", d)
	}
	var nd int
	for _, v := range ofType(runHistory(t, bus, run), "threshold.violated") {
		tv := v.GetThresholdViolated()
		if tv.NoData {
			nd++
			if tv.Severity != rules.SeverityCritical || !math.IsNaN(tv.Value) || !tv.GateFailed {
				t.Errorf("no-data violation = %v; want CRITICAL, NaN, gate failed", tv)
			}
		}
	}
	if nd == 0 {
		t.Errorf("no no-data violation published")
	}
	st := done.GetMonitorCompleted().Stats[rr.Metric]
	if st == nil || st.Missing < 1 || st.Samples < 1 || st.P95 <= 0 || st.Max < st.Min {
		t.Errorf("stats of %s = %v; want samples, a p95 and the missing ones", rr.Metric, st)
	}
}

// Shadow mode: violations are recorded and marked, nothing rolls back, and
// monitor.completed says what would have.
func TestShadowModeRecordsWithoutRollingBack(t *testing.T) {
	t.Parallel()
	e := start(t)
	tg := newTarget(t)
	tg.mode.Store("failing")
	run := "DEPLOY-20250922-143000-shadow"
	submit(t, e.bus, run, planYAML(fmt.Sprintf(`monitor:
  window: 2s
  interval: 300ms
  mode: shadow
  sources:
    - http_probe: {url: %q, requests: 4}
`, tg.URL)))
	done := waitFor(t, e.bus, run, "monitor.completed", 15*time.Second)
	h := runHistory(t, e.bus, run)
	if n := len(ofType(h, "rollback.requested")); n != 0 {
		t.Fatalf("rollback.requested ×%d in shadow mode", n)
	}
	viol := ofType(h, "threshold.violated")
	if len(viol) < 2 {
		t.Fatalf("threshold.violated ×%d; want every breach recorded", len(viol))
	}
	for _, v := range viol {
		if !v.GetThresholdViolated().Shadow {
			t.Errorf("violation not marked shadow: %v", v.GetThresholdViolated())
		}
	}
	mc := done.GetMonitorCompleted()
	if mc.RollbackRequested || !strings.Contains(mc.ShadowRollback, "error_rate") || !strings.Contains(mc.Reason, "shadow mode: would have rolled back") {
		t.Errorf("monitor.completed = %v; want no rollback and what shadow mode would have done", mc)
	}
}

// The monitor stops mid-window (its context cancelled, the message handed
// back) and a new one takes over: the same window goes on and ends on
// time, with the samples from before the stop in its statistics.
func TestWindowSurvivesMonitorRestart(t *testing.T) {
	t.Parallel()
	srv := natstest.Server(t)
	bus := natstest.Bus(t, srv, "monitor-test")
	o := Options{Consumer: eventbus.ConsumerOptions{DrainTimeout: 50 * time.Millisecond, AckWait: 2 * time.Second, Backoff: []time.Duration{50 * time.Millisecond}}}
	stop := runMonitor(t, bus, o)
	tg := newTarget(t)
	run := "DEPLOY-20250922-143000-restart"
	submit(t, bus, run, planYAML(fmt.Sprintf(`monitor:
  window: 4s
  interval: 250ms
  baseline: 0s
  sources:
    - http_probe: {url: %q, requests: 2}
`, tg.URL)))
	started := waitFor(t, bus, run, "monitor.started", 10*time.Second)
	natstest.Eventually(t, 10*time.Second, "samples before the restart", func() bool {
		ss, err := bus.RunSamples(context.Background(), run)
		return err == nil && len(ss) >= 8
	})
	stop()
	before, err := bus.RunSamples(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	if h := runHistory(t, bus, run); len(ofType(h, "monitor.completed")) != 0 {
		t.Fatalf("the stopped monitor completed the window: %v", types(h))
	}
	runMonitor(t, bus, o)

	done := waitFor(t, bus, run, "monitor.completed", 15*time.Second)
	h := runHistory(t, bus, run)
	if n := len(ofType(h, "monitor.started")); n != 1 {
		t.Errorf("monitor.started ×%d; want the window continued, not restarted", n)
	}
	// On time, late only by the ticks missed while no monitor ran: the
	// window is extended by them and watched in full.
	mc := done.GetMonitorCompleted()
	took, down := done.Time.AsTime().Sub(mc.WindowOpened.AsTime()), time.Duration(mc.DownMs)*time.Millisecond
	if took < 4*time.Second+down || took > 5500*time.Millisecond+down || down > 2*time.Second {
		t.Errorf("window closed %s after it opened, the monitor down %s; want on time (4s) and the time it missed", took, down)
	}
	if mc.ObservedMs != 4000 || mc.WindowMs != 4000 || down != time.Duration(mc.MissedTicks)*250*time.Millisecond {
		t.Errorf("observed %d of %d ms, %d tick(s) missed, down %s; want the whole window observed, down by the ticks missed", mc.ObservedMs, mc.WindowMs, mc.MissedTicks, down)
	}
	if opened := done.GetMonitorCompleted().WindowOpened.AsTime(); opened.After(started.Time.AsTime().Add(time.Second)) {
		t.Errorf("window opened at %s, long after monitor.started at %s: the deploy was done at once", opened, started.Time.AsTime())
	}
	if !strings.Contains(mc.Reason, "watch window of 4s ended") || mc.RollbackRequested {
		t.Errorf("monitor.completed = %v", mc)
	}
	if int(mc.Samples) <= len(before)-2 || mc.Stats[rules.MetricP95].GetSamples() < 8 {
		t.Errorf("monitor.completed counts %d samples (stats %v); %d were taken before the restart and must be in it", mc.Samples, mc.Stats[rules.MetricP95], len(before))
	}
}

// The baseline is sampled before the deploy: from change.requested until
// deploy.started, summarised into monitor.started.
func TestBaselineIsSampledBeforeTheDeploy(t *testing.T) {
	t.Parallel()
	e := start(t)
	tg := newTarget(t)
	run := "DEPLOY-20250922-143000-baseline"
	publish(t, e.bus, eventbus.New(run, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		PlanYaml: planYAML(fmt.Sprintf(`monitor:
  window: 1s
  interval: 200ms
  baseline: 5s
  sources:
    - http_probe: {url: %q, requests: 2}
`, tg.URL)), PlanSource: "test.yaml", ChangeId: "CR-2025-001",
	}}))
	natstest.Eventually(t, 10*time.Second, "baseline samples", func() bool {
		ss, err := e.bus.RunSamples(context.Background(), run)
		return err == nil && len(ss) >= 6
	})
	deploy := publish(t, e.bus, eventbus.New(run, &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}}))
	deployDone(t, e.bus, run, time.Now())
	ms := waitFor(t, e.bus, run, "monitor.started", 10*time.Second).GetMonitorStarted()
	if ms.BaselineWindow == "one round at deploy.started" || len(ms.Baseline) != 2 {
		t.Fatalf("monitor.started = %v; want the pre-deployment baseline of p95 and error rate", ms)
	}
	for _, b := range ms.Baseline {
		if !b.Time.AsTime().Before(deploy.Time.AsTime()) {
			t.Errorf("baseline sample %v taken after deploy.started", b)
		}
	}
	// The window itself goes on as usual.
	waitFor(t, e.bus, run, "monitor.completed", 10*time.Second)
}
