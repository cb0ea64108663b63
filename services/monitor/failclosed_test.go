package monitor

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kis-core/runbook/domain/vocab"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/embedded"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// crashPlan is a 2 s window sampled every 200 ms: ten judged ticks.
func crashPlan(url string) string {
	return planYAML(fmt.Sprintf(`monitor:
  window: 2s
  interval: 200ms
  baseline: 0s
  sources:
    - http_probe: {url: %q, requests: 2}
`, url))
}

const (
	crashWindow = 2 * time.Second
	crashTicks  = 10
)

// judgedTicks is how many ticks of run's window have a judged sample
// stored (as a restarted monitor counts them).
func judgedTicks(t *testing.T, bus *eventbus.Bus, run string, opened time.Time) int {
	t.Helper()
	interval := 200 * time.Millisecond
	off := jitter(run, interval, 0.2)
	ticks := map[int]bool{}
	for _, s := range samplesWhere(t, bus, run, func(s *runbookv1.MetricSample) bool { return !s.DuringDeploy }) {
		if at := s.GetTime().AsTime(); !at.Before(opened) {
			if n := int(at.Sub(opened.Add(off)) / interval); n > 0 {
				ticks[n] = true
			}
		}
	}
	return len(ticks)
}

// stopRightAfterOpening runs a monitor on a fresh bus, submits a run whose
// deploy is done at once, and stops the monitor once the window has its
// first judged sample: the monitor is "killed" right after the window
// opened. It returns the bus, the window's opening and the
// ticks judged before the stop.
func stopRightAfterOpening(t *testing.T, o Options, run, url string) (*eventbus.Bus, time.Time, int) {
	t.Helper()
	srv := natstest.Server(t)
	bus := natstest.Bus(t, srv, "monitor-test")
	stop := runMonitor(t, bus, o)
	submit(t, bus, run, crashPlan(url))
	waitFor(t, bus, run, "monitor.started", 10*time.Second)
	opened := ofType(runHistory(t, bus, run), "deploy.done")[0].Time.AsTime()
	natstest.Eventually(t, 10*time.Second, "the window's first judged sample", func() bool {
		return judgedTicks(t, bus, run, opened) >= 1
	})
	stop()
	before := judgedTicks(t, bus, run, opened)
	if h := runHistory(t, bus, run); len(ofType(h, "monitor.completed")) != 0 {
		t.Fatalf("the stopped monitor completed the window: %v", types(h))
	}
	if before >= crashTicks/2 {
		t.Fatalf("%d of %d ticks judged before the stop; the test needs the monitor stopped right after the window opened", before, crashTicks)
	}
	return bus, opened, before
}

// waitUntil waits for the wall clock to pass at (the monitor is down
// meanwhile).
func waitUntil(t *testing.T, at time.Time) {
	t.Helper()
	natstest.Eventually(t, time.Until(at)+5*time.Second, "the clock to pass "+at.Format(time.StampMilli), func() bool {
		return time.Now().After(at)
	})
}

var crashConsumer = eventbus.ConsumerOptions{DrainTimeout: 50 * time.Millisecond, AckWait: 2 * time.Second, Backoff: []time.Duration{50 * time.Millisecond}}

// The monitor is stopped right after the window opens and comes back
// after the window's end and then some: down longer than the one extra
// window it may make up. The window was not watched: the monitor asks for
// the rollback at once (fail closed) instead of closing a window of one
// sample as passed, and monitor.completed says how much was watched.
func TestMonitorDownPastTheWindowFailsClosed(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	run := "DEPLOY-20250922-143000-notwatched"
	bus, opened, before := stopRightAfterOpening(t, Options{Consumer: crashConsumer}, run, tg.URL)
	tg.mode.Store("failing") // a bad release nobody watches
	waitUntil(t, opened.Add(2*crashWindow+300*time.Millisecond))
	restarted := time.Now()
	runMonitor(t, bus, Options{Consumer: crashConsumer})

	done := waitFor(t, bus, run, "monitor.completed", 10*time.Second)
	mc := done.GetMonitorCompleted()
	h := runHistory(t, bus, run)
	rr := ofType(h, "rollback.requested")
	if len(rr) != 1 || !strings.HasPrefix(rr[0].GetRollbackRequested().GetReason(), "not watched: monitor down for ") || rr[0].GetRollbackRequested().GetRequestedBy() != RequestedBy {
		t.Fatalf("rollback.requested = %v; want one, by the monitor: not watched", rr)
	}
	if !mc.RollbackRequested || mc.Reason != vocab.NotWatched(mc.DownMs) || mc.Reason != rr[0].GetRollbackRequested().GetReason() {
		t.Errorf("monitor.completed: rollback %v, reason %q; want the rollback asked for, %q", mc.RollbackRequested, mc.Reason, vocab.NotWatched(mc.DownMs))
	}
	if took := done.Time.AsTime().Sub(restarted); took > 3*time.Second {
		t.Errorf("the not-watched window closed %s after the restart; want at once", took)
	}
	// Watched: the ticks judged before the stop; missed: the rest.
	if mc.WindowMs != crashWindow.Milliseconds() || mc.MissedTicks != int32(crashTicks-before) ||
		mc.ObservedMs != int64(before)*crashWindow.Milliseconds()/crashTicks {
		t.Errorf("window %d ms, observed %d ms, missed %d ticks; want %d ms, %d ms (%d of %d ticks judged before the stop), %d ticks",
			mc.WindowMs, mc.ObservedMs, mc.MissedTicks, crashWindow.Milliseconds(), int64(before)*crashWindow.Milliseconds()/crashTicks, before, crashTicks, crashTicks-before)
	}
	// Down: the missed ticks, and from the window's end to the restart.
	wantDown := time.Duration(crashTicks-before)*200*time.Millisecond + restarted.Sub(opened.Add(crashWindow))
	if d := time.Duration(mc.DownMs) * time.Millisecond; d < wantDown-200*time.Millisecond || d > wantDown+time.Second || d <= crashWindow {
		t.Errorf("down %s; want about %s, more than the window", d, wantDown)
	}
	if n := len(ofType(h, "monitor.started")); n != 1 {
		t.Errorf("monitor.started ×%d; want the one window", n)
	}
	if got := vocab.Observed(mc); !strings.HasPrefix(got, fmt.Sprintf("observed %s of 2 s; the monitor was down ", vocab.Seconds(mc.ObservedMs))) {
		t.Errorf("vocab.Observed = %q", got)
	}
}

// The same stop, with the monitor allowed to make up three windows: the
// restarted monitor watches the time it missed, sees the bad release and
// asks for the rollback by its gate.
func TestMonitorDownPastTheWindowWatchesWhatItMissed(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	o := Options{Consumer: crashConsumer, CatchUp: 3}
	run := "DEPLOY-20250922-143000-caughtup"
	bus, opened, before := stopRightAfterOpening(t, o, run, tg.URL)
	tg.mode.Store("failing")
	waitUntil(t, opened.Add(crashWindow+500*time.Millisecond))
	restarted := time.Now()
	runMonitor(t, bus, o)

	done := waitFor(t, bus, run, "monitor.completed", 15*time.Second)
	mc := done.GetMonitorCompleted()
	h := runHistory(t, bus, run)
	rr := ofType(h, "rollback.requested")
	if len(rr) != 1 || strings.HasPrefix(rr[0].GetRollbackRequested().GetReason(), "not watched") || rr[0].GetRollbackRequested().GetMetric() == "" {
		t.Fatalf("rollback.requested = %v; want one, by a gate that judged the bad release", rr)
	}
	if !mc.RollbackRequested || mc.Samples <= int32(before) || mc.Violations == 0 {
		t.Errorf("monitor.completed = %v; want the rollback asked for after watching the release", mc)
	}
	wantDown := time.Duration(crashTicks-before)*200*time.Millisecond + restarted.Sub(opened.Add(crashWindow))
	if d := time.Duration(mc.DownMs) * time.Millisecond; mc.MissedTicks != int32(crashTicks-before) || d < wantDown-200*time.Millisecond || d > wantDown+time.Second {
		t.Errorf("missed %d ticks, down %s; want %d ticks, about %s", mc.MissedTicks, d, crashTicks-before, wantDown)
	}
	if mc.ObservedMs <= int64(before)*crashWindow.Milliseconds()/crashTicks || mc.ObservedMs >= mc.WindowMs {
		t.Errorf("observed %d ms of %d; want more than before the stop, less than the window (stopped early)", mc.ObservedMs, mc.WindowMs)
	}
}

// A window's first reads fail while NATS is down (the monitor picks the
// window up during the outage): they are retried with backoff, never taken
// for "nothing to watch", and once NATS is back the window is watched for
// its whole length, late by the outage.
func TestHistoryReadRetriedAcrossNATSRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, err := embedded.Start(embedded.Options{Port: -1, StoreDir: dir, NoSync: true, InsecureNoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	port := srv.Addr().(*net.TCPAddr).Port
	bus := natstest.Bus(t, srv, "monitor-test")
	reg := prometheus.NewRegistry()
	svc := New(bus, Options{ReadTimeout: 300 * time.Millisecond, CatchUp: 10}, slog.New(slog.NewTextHandler(t.Output(), nil)), nil, reg)
	tg := newTarget(t)
	run := "DEPLOY-20250922-143000-natsrestart"
	submit(t, bus, run, planYAML(fmt.Sprintf(`monitor:
  window: 1s
  interval: 100ms
  baseline: 0s
  sources:
    - http_probe: {url: %q, requests: 1}
`, tg.URL)))
	h := runHistory(t, bus, run)
	ds, opened := ofType(h, "deploy.started")[0], ofType(h, "deploy.done")[0].Time.AsTime()

	srv.Shutdown()
	srv.WaitForShutdown()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	handled := make(chan error, 1)
	go func() { handled <- svc.onDeployStarted(ctx, ds, ds.GetDeployStarted()) }()
	natstest.Eventually(t, 20*time.Second, "reads failing and retried", func() bool {
		return testutil.ToFloat64(svc.met.readRetries) >= 2
	})
	// NATS stays down past the window's end: none of its ticks watched.
	waitUntil(t, opened.Add(time.Second+100*time.Millisecond))
	srv2, err := embedded.Start(embedded.Options{Port: port, StoreDir: dir, NoSync: true, InsecureNoAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Shutdown)
	select {
	case err := <-handled:
		if err != nil {
			t.Fatalf("handler: %v; want the failed reads retried", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the handler did not return 30s after NATS came back")
	}
	h = runHistory(t, bus, run)
	mc := ofType(h, "monitor.completed")
	if len(mc) != 1 {
		t.Fatalf("monitor.completed ×%d: %v", len(mc), types(h))
	}
	c := mc[0].GetMonitorCompleted()
	if c.RollbackRequested || !strings.Contains(c.Reason, "watch window of 1s ended") || c.Samples < 8 {
		t.Errorf("monitor.completed = %v; want the whole window watched (a good release)", c)
	}
	if c.ObservedMs != 1000 || c.WindowMs != 1000 || c.MissedTicks != 10 || c.DownMs < 1000 {
		t.Errorf("observed %d of %d ms, missed %d ticks, down %d ms; want all 1000 ms observed, the 10 ticks of the outage made up", c.ObservedMs, c.WindowMs, c.MissedTicks, c.DownMs)
	}
	if took, want := mc[0].Time.AsTime().Sub(opened), time.Second+time.Duration(c.DownMs)*time.Millisecond; took < want-150*time.Millisecond || took > want+time.Second {
		t.Errorf("the window closed %s after it opened; want the window and the time it was down (%s)", took, want)
	}
}
