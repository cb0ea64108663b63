package allinone_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/eventbus/natstest"
)

// monitorBenchPlan: a no-op deploy and rollback; a watch window on %[1]s.
const monitorBenchPlan = gatePlan + `  window: %[2]s
  interval: %[3]s
  baseline: 0s
  sources:
    - http_probe: {url: %[1]q, requests: 1}
`

func pct(xs []float64, q float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}

// BenchmarkMonitorBreachToRollback measures, from the stored times, the
// breaching sample (the first error_rate sample above 1.5 % on
// RUNBOOK_METRICS) → the monitor's rollback.requested → the first
// rollback.step.started (target ≤ 1 s). The target turns bad once the
// run's window has started. Baseline, same runs: change.requested → the
// first deploy.step.started. sync=true (every write fsynced).
func BenchmarkMonitorBreachToRollback(b *testing.B) {
	const runs = 20
	p := startPipeline(b, func(o *allinone.Options) { o.NoSync = false })
	var toReq, toStep, base []float64
	for range b.N {
		for range runs {
			var bad atomic.Bool
			tg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if bad.Load() {
					w.WriteHeader(http.StatusInternalServerError)
				}
			}))
			run := p.submit(b, []byte(fmt.Sprintf(monitorBenchPlan, tg.URL, "60s", "200ms")))
			natstest.Eventually(b, 30*time.Second, "monitor.started of "+run, func() bool {
				e, err := p.bus.LastEvent(context.Background(), run, "monitor.started")
				return err == nil && e != nil
			})
			bad.Store(true)
			natstest.Eventually(b, 30*time.Second, "rollback.step.started of "+run, func() bool {
				e, err := p.bus.LastEvent(context.Background(), run, "rollback.step.started")
				return err == nil && e != nil
			})
			tg.Close()
			evs := p.history(b, run)
			ss, err := p.bus.RunSamples(context.Background(), run)
			if err != nil {
				b.Fatal(err)
			}
			var breach time.Time
			for _, s := range ss {
				if s.Metric == "error_rate" && s.Value > 0.015 && !s.DuringDeploy { // the deploy's samples are not judged
					breach = s.Time.AsTime()
					break
				}
			}
			req := evs[index(evs, "rollback.requested")].Time.AsTime()
			step := evs[index(evs, "rollback.step.started")].Time.AsTime()
			if breach.IsZero() {
				b.Fatalf("run %s: no breaching sample", run)
			}
			toReq = append(toReq, float64(req.Sub(breach).Microseconds())/1000)
			toStep = append(toStep, float64(step.Sub(breach).Microseconds())/1000)
			base = append(base, float64(evs[index(evs, "deploy.step.started")].Time.AsTime().Sub(evs[0].Time.AsTime()).Microseconds())/1000)
		}
	}
	b.ReportMetric(median(toReq), "ms-sample-to-rollback-requested-p50")
	b.ReportMetric(pct(toReq, 0.9), "ms-sample-to-rollback-requested-p90")
	b.ReportMetric(median(toStep), "ms-sample-to-rollback-step-p50")
	b.ReportMetric(pct(toStep, 0.9), "ms-sample-to-rollback-step-p90")
	b.ReportMetric(pct(toStep, 1), "ms-sample-to-rollback-step-max")
	b.ReportMetric(median(base), "ms-baseline-to-first-deploy-step-p50")
}

// BenchmarkMonitorScale holds RUNBOOK_BENCH_WINDOWS (default 1000) runs in
// their watch window at once in one `runbook serve` (in this process), each
// probing a healthy target every RUNBOOK_BENCH_INTERVAL (default 1s), and
// reports the samples per second the monitor sustained over 10 s against
// the samples asked for, and the process's RSS (VmRSS: runbook serve, the
// target and the benchmark itself: an upper bound).
func BenchmarkMonitorScale(b *testing.B) {
	windows, interval := 1000, "1s"
	if v := os.Getenv("RUNBOOK_BENCH_WINDOWS"); v != "" {
		windows, _ = strconv.Atoi(v)
	}
	if v := os.Getenv("RUNBOOK_BENCH_INTERVAL"); v != "" {
		interval = v
	}
	iv, err := time.ParseDuration(interval)
	if err != nil {
		b.Fatal(err)
	}
	tg := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer tg.Close()
	reg := prometheus.NewRegistry()
	p := startPipeline(b, func(o *allinone.Options) { o.Registry = reg })
	data := []byte(fmt.Sprintf(monitorBenchPlan, tg.URL, "30m", interval))
	for range b.N {
		submitStart := time.Now()
		for range windows {
			p.submit(b, data)
		}
		// A window whose probe times out on a busy machine rolls back
		// (fail closed) and ends: count those as started too, and report them.
		natstest.Eventually(b, 3*time.Minute, "every window started", func() bool {
			return gauge(b, reg, "runbook_monitor_windows_active")+counter(b, reg, "runbook_monitor_rollbacks_requested_total") >= float64(windows)
		})
		b.Logf("%d windows active %s after the first submit", windows, time.Since(submitStart).Round(time.Millisecond))
		s0, t0 := counter(b, reg, "runbook_monitor_samples_total"), time.Now()
		time.Sleep(10 * time.Second) // the measurement period, not a synchronisation
		s1, t1 := counter(b, reg, "runbook_monitor_samples_total"), time.Now()
		rate := (s1 - s0) / t1.Sub(t0).Seconds()
		want := float64(windows) * 2 / iv.Seconds() // p95 and error rate per round
		runtime.GC()
		b.ReportMetric(rate, "samples/s")
		b.ReportMetric(want, "samples/s-asked")
		b.ReportMetric(vmRSS(b)/(1<<20), "MB-RSS")
		b.ReportMetric(float64(windows), "windows")
		b.ReportMetric(counter(b, reg, "runbook_monitor_rollbacks_requested_total"), "windows-rolled-back")
	}
}

func gauge(b *testing.B, reg *prometheus.Registry, name string) float64 { return sum(b, reg, name) }

func counter(b *testing.B, reg *prometheus.Registry, name string) float64 { return sum(b, reg, name) }

func sum(b *testing.B, reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			total += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return total
}

func vmRSS(b *testing.B) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	return 0
}
