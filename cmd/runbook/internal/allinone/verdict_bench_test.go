package allinone_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kis-core/runbook/eventbus/natstest"
)

// breachPlan: a no-op deploy, a window of 60 s scraped every 1 s, one
// error-rate gate "for: %[2]s" (N of M samples above 1 %, rollback at 1.5 %).
const breachPlan = gatePlan + `  window: 60s
  interval: 1s
  baseline: 0s
  sources:
    - http_probe: {url: %[1]q, requests: 5}
  gates:
    error_rate: {max: 0.01, for: "%[2]s"}
  auto_rollback: {metrics: [error_rate]}
`

// BenchmarkBreachToDecision measures breach to decision as an operator
// feels it: the target turns bad (every answer 500) at a known moment once
// the window is open — users get 500s from that moment on —; the time from
// that moment to the stored rollback.requested, with `for: 1 of 1` and `2 of 3`, scraped every
// 1 s. Goal: within 2 sampling intervals (2 s) for 1 of 1, within 3 for 2
// of 3 (two bad samples are needed). RUNBOOK_BENCH_RUNS runs each (default 10).
func BenchmarkBreachToDecision(b *testing.B) {
	runs := 10
	if v := os.Getenv("RUNBOOK_BENCH_RUNS"); v != "" {
		runs, _ = strconv.Atoi(v)
	}
	p := startPipeline(b, nil)
	for _, gate := range []string{"1 of 1", "2 of 3"} {
		b.Run(fmt.Sprintf("for=%s", gate), func(b *testing.B) {
			var ms []float64
			for range b.N {
				for range runs {
					var bad atomic.Bool
					tg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
						if bad.Load() {
							w.WriteHeader(http.StatusInternalServerError)
						}
					}))
					run := p.submit(b, []byte(fmt.Sprintf(breachPlan, tg.URL, gate)))
					natstest.Eventually(b, 30*time.Second, "deploy.done of "+run, func() bool {
						e, err := p.bus.LastEvent(context.Background(), run, "deploy.done")
						return err == nil && e != nil
					})
					// Turn bad at a moment unrelated to the scrape schedule.
					time.Sleep(time.Duration(1500+len(ms)*137%1000) * time.Millisecond) // the experiment's timing, not a synchronisation
					bad.Store(true)
					turnedBad := time.Now()
					var req time.Time
					natstest.Eventually(b, 30*time.Second, "rollback.requested of "+run, func() bool {
						e, err := p.bus.LastEvent(context.Background(), run, "rollback.requested")
						if err == nil && e != nil {
							req = e.Event.GetTime().AsTime()
						}
						return !req.IsZero()
					})
					tg.Close()
					ms = append(ms, float64(req.Sub(turnedBad).Microseconds())/1000)
				}
			}
			b.ReportMetric(median(ms), "ms-turned-bad-to-rollback-requested-p50")
			b.ReportMetric(pct(ms, 0.9), "ms-turned-bad-to-rollback-requested-p90")
			b.ReportMetric(pct(ms, 1), "ms-turned-bad-to-rollback-requested-max")
			b.ReportMetric(pct(ms, 1)/1000, "intervals-max")
		})
	}
}

// falseRollbackPlan is a good release deployed the way the seed deploys:
// the gateway serves a maintenance page (503) during the deploy, the new
// release warms up for 5 s (503 "warming up") and the health gate waits
// until it is ready (by content); the window then watches it through the
// gateway (http_probe) and the release's own /metrics (prometheus_scrape,
// with users' traffic), and one of those scrapes is dropped (the
// connection is closed without an answer).
const falseRollbackPlan = `change_request: {id: CR-FALSE, title: "a good release", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
deploy:
  steps:
    - {name: "block traffic", command: {argv: [touch, %[2]q]}}
    - {name: "switch release", command: {argv: [touch, %[3]q]}}
  health:
    - {url: "%[1]s/health", initial_delay: 0s, interval: 250ms, attempts: 40, expect: {status: 200, json: {state: ready}}}
  finally:
    - {name: "restore traffic", command: {argv: [rm, -f, %[2]q]}}
rollback_plan:
  rollback_steps:
    - {name: restore, idempotent: true, command: {argv: ["true"]}}
monitor:
  window: 5s
  interval: 1s
  baseline: 0s
  sources:
    - http_probe: {url: "%[1]s/api", requests: 3}
    - prometheus_scrape:
        url: "%[1]s/metrics"
        latency_histogram: bench_latency_seconds
        requests_counter: bench_requests_total
        errors_counter: bench_errors_total
  thresholds: {error_rate: 0.01, api_response_time_p95: 2100}
  auto_rollback: {metrics: [error_rate, api_response_time_p95]}
`

// BenchmarkFalseRollbacks runs RUNBOOK_BENCH_RUNS (default 20) good
// releases, each with a maintenance page during its deploy, a 5 s warm-up
// and one dropped scrape in its window, and reports how many rolled back
// (goal: 0) beside how many ended SUCCESS.
func BenchmarkFalseRollbacks(b *testing.B) {
	runs := 20
	if v := os.Getenv("RUNBOOK_BENCH_RUNS"); v != "" {
		runs, _ = strconv.Atoi(v)
	}
	p := startPipeline(b, nil)
	for range b.N {
		rolledBack, success, duringDeploy := 0, 0, 0
		for i := range runs {
			dir := b.TempDir()
			maint, release := filepath.Join(dir, "maintenance"), filepath.Join(dir, "release")
			var switched atomic.Int64 // when the new release started (unix ns)
			var dropped atomic.Bool
			reg := prometheus.NewRegistry()
			reqs := prometheus.NewCounter(prometheus.CounterOpts{Name: "bench_requests_total"})
			errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "bench_errors_total"})
			lat := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bench_latency_seconds"})
			reg.MustRegister(reqs, errs, lat)
			metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
			tg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if st, err := os.Stat(release); err == nil {
					switched.CompareAndSwap(0, st.ModTime().UnixNano())
				}
				warm := switched.Load() != 0 && time.Since(time.Unix(0, switched.Load())) >= 5*time.Second
				switch r.URL.Path {
				case "/health": // the release itself, behind the gateway
					if !warm {
						w.Write([]byte(`{"state":"warming up"}`))
						return
					}
					w.Write([]byte(`{"state":"ready"}`))
					return
				case "/metrics": // the release's own metrics
					if warm && dropped.CompareAndSwap(false, true) {
						// One missed scrape: the connection closes unanswered.
						if hj, ok := w.(http.Hijacker); ok {
							if c, _, err := hj.Hijack(); err == nil {
								c.Close()
								return
							}
						}
					}
					metrics.ServeHTTP(w, r)
					return
				}
				if _, err := os.Stat(maint); err == nil { // the gateway's maintenance page
					http.Error(w, `{"status":"maintenance"}`, http.StatusServiceUnavailable)
					return
				}
				start := time.Now()
				reqs.Inc()
				defer func() { lat.Observe(time.Since(start).Seconds()) }()
				if !warm {
					errs.Inc()
					http.Error(w, "warming up", http.StatusServiceUnavailable)
					return
				}
				w.Write([]byte("ok"))
			}))
			// Users: a request every 50 ms for as long as the run lasts.
			users, stopUsers := context.WithCancel(context.Background())
			go func() {
				t := time.NewTicker(50 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-users.Done():
						return
					case <-t.C:
						if resp, err := http.Get(tg.URL + "/api"); err == nil {
							resp.Body.Close()
						}
					}
				}
			}()
			run := p.submit(b, []byte(fmt.Sprintf(falseRollbackPlan, tg.URL, maint, release)))
			rr := p.report(b, run, 90*time.Second)
			stopUsers()
			tg.Close()
			if !dropped.Load() {
				b.Errorf("run %d (%s): no scrape was dropped", i, run)
			}
			if e, err := p.bus.LastEvent(context.Background(), run, "monitor.completed"); err == nil && e != nil {
				duringDeploy += int(e.Event.GetMonitorCompleted().GetDuringDeploySamples())
			}
			switch rr.Status {
			case "SUCCESS":
				success++
			case "ROLLED_BACK":
				rolledBack++
				b.Logf("run %d (%s) rolled back:\n%s", i, run, rr.QcSummary)
			default:
				b.Logf("run %d (%s) ended %s:\n%s", i, run, rr.Status, rr.QcSummary)
			}
		}
		b.ReportMetric(float64(rolledBack), "false-rollbacks")
		b.ReportMetric(float64(success), "success")
		b.ReportMetric(float64(runs), "runs")
		b.ReportMetric(float64(duringDeploy)/float64(runs), "samples-during-deploy/run")
	}
}
