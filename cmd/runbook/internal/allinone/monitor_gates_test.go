package allinone_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// gatePlan deploys and rolls back with no-op steps; its monitor section is
// the test's.
const gatePlan = `change_request: {id: CR-GATE, title: "monitor gates", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
deploy:
  steps:
    - {name: roll out, idempotent: true, command: {argv: ["true"]}}
rollback_plan:
  rollback_steps:
    - {name: restore, idempotent: true, command: {argv: ["true"]}}
monitor:
`

// gateTarget answers at once except for the next `slow` requests (300ms
// each), and fails every request while failing is set.
type gateTarget struct {
	*httptest.Server
	slow    atomic.Int64
	failing atomic.Bool
}

func newGateTarget(t *testing.T) *gateTarget {
	tg := &gateTarget{}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tg.failing.Load() {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
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

// metricsTarget serves a request-duration histogram with fresh traffic at
// every scrape.
func metricsTarget(t *testing.T) *httptest.Server {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := n.Add(10)
		fmt.Fprintf(w, "# TYPE http_request_duration_seconds histogram\n"+
			"http_request_duration_seconds_bucket{le=\"0.05\"} %d\nhttp_request_duration_seconds_bucket{le=\"+Inf\"} %d\n"+
			"http_request_duration_seconds_sum 1\nhttp_request_duration_seconds_count %d\n", c, c, c)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func (p *pipeline) waitMonitorStarted(t *testing.T, run string) *runbookv1.Event {
	t.Helper()
	return p.waitEvent(t, run, "monitor.started", 30*time.Second, nil)
}

// The gates end to end, runs side by side in one `runbook serve`:
// a target that stops answering rolls back (fail closed); `for: 3 of 5`
// rides out one slow sample and rolls back on three; shadow mode records
// the violations, rolls nothing back, and the report says so.
func TestMonitorGates(t *testing.T) {
	p := startPipeline(t, nil)
	t.Run("no data", func(t *testing.T) {
		t.Parallel()
		tg := metricsTarget(t)
		run := p.submit(t, []byte(gatePlan+fmt.Sprintf(`  window: 20s
  interval: 300ms
  sources:
    - prometheus_scrape: {url: %q, latency_histogram: http_request_duration_seconds}
  gates:
    api_response_time_p95: {max: 2100, no_data_after: 2}
`, tg.URL)))
		p.waitMonitorStarted(t, run)
		natstest.Eventually(t, 20*time.Second, "samples before the stop", func() bool {
			ss, err := p.bus.RunSamples(context.Background(), run)
			return err == nil && len(ss) >= 3
		})
		tg.Close()
		rr := p.report(t, run, 60*time.Second)
		evs := p.history(t, run)
		if rr.Status != "ROLLED_BACK" {
			t.Fatalf("a target that stopped answering ended %s: %v", rr.Status, types(evs))
		}
		req := evs[index(evs, "rollback.requested")].GetRollbackRequested()
		if !req.NoData || req.RequestedBy != "monitor" || !strings.Contains(req.Reason, "no data") {
			t.Errorf("rollback.requested = %v; want the monitor's no-data rollback", req)
		}
		if !strings.Contains(rr.ReportJson, "no data (the sources stopped reporting it; fail closed)") {
			t.Errorf("the report does not say the data stopped:\n%s", rr.ReportJson)
		}
	})
	for _, tc := range []struct {
		name   string
		slow   int64
		status string
	}{
		{"one slow sample", 4, "SUCCESS"},
		{"three slow samples", 12, "ROLLED_BACK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tg := newGateTarget(t)
			run := p.submit(t, []byte(gatePlan+fmt.Sprintf(`  window: 5s
  interval: 500ms
  baseline: 0s
  sources:
    - http_probe: {url: %q, requests: 4}
  gates:
    api_response_time_p95: {max: 100, critical: 150, for: 3 of 5}
`, tg.URL)))
			p.waitMonitorStarted(t, run)
			tg.slow.Store(tc.slow)
			rr := p.report(t, run, 60*time.Second)
			evs := p.history(t, run)
			if rr.Status != tc.status {
				t.Fatalf("ended %s; want %s: %v", rr.Status, tc.status, types(evs))
			}
			if countType(evs, "threshold.violated") == 0 {
				t.Errorf("the slow sample left no threshold.violated: %v", types(evs))
			}
			if tc.status == "ROLLED_BACK" {
				req := evs[index(evs, "rollback.requested")].GetRollbackRequested()
				if req.Rule != "api_response_time_p95 > 150 for 3 of 5 samples" || len(req.WindowValues) < 3 {
					t.Errorf("rollback.requested = %v; want the rule and the values it judged", req)
				}
			}
		})
	}
	t.Run("shadow", func(t *testing.T) {
		t.Parallel()
		tg := newGateTarget(t)
		tg.failing.Store(true)
		run := p.submit(t, []byte(gatePlan+fmt.Sprintf(`  window: 3s
  interval: 300ms
  mode: shadow
  sources:
    - http_probe: {url: %q, requests: 4}
`, tg.URL)))
		rr := p.report(t, run, 60*time.Second)
		evs := p.history(t, run)
		if rr.Status != "SUCCESS" || countType(evs, "rollback.requested") != 0 {
			t.Fatalf("shadow mode ended %s: %v", rr.Status, types(evs))
		}
		if countType(evs, "threshold.violated") < 2 || !strings.Contains(rr.ReportJson, "shadow mode: recorded, not enforced") {
			t.Errorf("violations ×%d; the report must list them as shadow:\n%s", countType(evs, "threshold.violated"), rr.ReportJson)
		}
		mc := evs[index(evs, "monitor.completed")].GetMonitorCompleted()
		if !strings.Contains(mc.ShadowRollback, "error_rate") {
			t.Errorf("monitor.completed = %v; want what shadow mode would have rolled back", mc)
		}
	})
}

// The monitor, a separate process, is killed (SIGKILL) in the middle of a
// window and started again: the window resumes from the journal and ends on
// time, neither restarted nor stopped.
func TestMonitorKilledMidWindow(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the monitor binary")
	}
	bin := buildService(t, "monitor")
	s := serveWithout(t, "monitor")
	p := &pipeline{bus: natstest.Bus(t, s, "kill-monitor")}
	logPath := filepath.Join(t.TempDir(), "monitor.log")
	mon := startProc(t, bin, logPath, "--nats-url", s.ClientURL(), "--metrics-listen", "127.0.0.1:0", "--ack-wait", "1s", "--insecure-no-auth")

	tg := newGateTarget(t)
	run := p.submit(t, []byte(gatePlan+fmt.Sprintf(`  window: 8s
  interval: 250ms
  baseline: 0s
  sources:
    - http_probe: {url: %q, requests: 2}
`, tg.URL)))
	started := p.waitMonitorStarted(t, run)
	natstest.Eventually(t, 20*time.Second, "samples before the kill", func() bool {
		ss, err := p.bus.RunSamples(context.Background(), run)
		return err == nil && len(ss) >= 6
	})
	mon.restart() // SIGKILL mid-window, then a new process

	rr := p.report(t, run, 60*time.Second)
	evs := p.history(t, run)
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("monitor log:\n%s", b)
		}
	}()
	if rr.Status != "SUCCESS" {
		t.Fatalf("ended %s: %v", rr.Status, types(evs))
	}
	if n := countType(evs, "monitor.started"); n != 1 {
		t.Errorf("monitor.started ×%d; want the one window continued", n)
	}
	done := evs[index(evs, "monitor.completed")]
	opened := done.GetMonitorCompleted().WindowOpened.AsTime()
	if !opened.Equal(evs[index(evs, "deploy.done")].Time.AsTime()) || opened.Sub(started.Time.AsTime()) > time.Second {
		t.Errorf("the window opened at %s; want at deploy.done, right after monitor.started %s", opened, started.Time.AsTime())
	}
	// On time, late only by the ticks missed while no monitor ran (the
	// kill, the new process, the redelivery after --ack-wait): the window
	// is extended by them and watched in full.
	mc := done.GetMonitorCompleted()
	took, down := done.Time.AsTime().Sub(opened), time.Duration(mc.DownMs)*time.Millisecond
	if took < 8*time.Second+down || took > 9500*time.Millisecond+down || down > 3*time.Second {
		t.Errorf("the window closed %s after it opened, the monitor down %s; want on time (8s) and the time it missed", took, down)
	}
	if !strings.Contains(mc.Reason, "watch window of 8s ended") || mc.ObservedMs != 8000 || mc.WindowMs != 8000 ||
		down != time.Duration(mc.MissedTicks)*250*time.Millisecond {
		t.Errorf("monitor.completed = %v; want the whole window observed, down by the ticks missed", mc)
	}
	if !strings.Contains(rr.QcSummary, "\nOverall: PASS") {
		t.Errorf("QC summary:\n%s", rr.QcSummary)
	}
	noDuplicateIDs(t, evs)
}
