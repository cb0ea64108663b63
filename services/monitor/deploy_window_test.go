package monitor

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/monitor/rules"
)

// maintenanceTarget serves a maintenance page (503) while deploying is set,
// as the seed's procedure does during its deploy, and 200 otherwise.
type maintenanceTarget struct {
	*httptest.Server
	deploying atomic.Bool
}

func newMaintenanceTarget(t *testing.T) *maintenanceTarget {
	tg := &maintenanceTarget{}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tg.deploying.Load() {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(tg.Close)
	return tg
}

func maintenancePlan(url, extra string) string {
	return planYAML(fmt.Sprintf(`monitor:
  window: 3s
  interval: 300ms
  baseline: 0s
  sources:
    - http_probe: {url: %q, requests: 4}
%s`, url, extra))
}

// samplesWhere are the run's samples on RUNBOOK_METRICS that ok keeps.
func samplesWhere(t *testing.T, bus *eventbus.Bus, run string, ok func(*runbookv1.MetricSample) bool) []*runbookv1.MetricSample {
	t.Helper()
	ss, err := bus.RunSamples(context.Background(), run)
	if err != nil {
		t.Fatalf("samples: %v", err)
	}
	var out []*runbookv1.MetricSample
	for _, s := range ss {
		if ok(s) {
			out = append(out, s)
		}
	}
	return out
}

func duringDeploy(s *runbookv1.MetricSample) bool { return s.DuringDeploy }

// The seed's procedure serves a maintenance page during its deploy: those
// 503s are sampled and published with during_deploy, never judged, and the
// window opens at deploy.done for its whole length. With monitor.start:
// deploy_started the same 503s are judged and roll back. The deploy
// outlasts the consumer's AckWait: the held deploy.started is kept by the
// router's heartbeats, never redelivered.
func TestDeploySamplesAreRecordedNotJudged(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, extra string
	}{
		{"deploy_done", ""},
		{"deploy_started", "  start: deploy_started\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := natstest.Server(t)
			bus := natstest.Bus(t, srv, "monitor-test")
			runMonitor(t, bus, Options{Consumer: eventbus.ConsumerOptions{AckWait: time.Second}})
			tg := newMaintenanceTarget(t)
			tg.deploying.Store(true)
			run := "DEPLOY-20250922-143000-maint-" + strings.ReplaceAll(tc.name, "_", "-")
			ds := submitDeploying(t, bus, run, maintenancePlan(tg.URL, tc.extra))
			started := waitFor(t, bus, run, "monitor.started", 10*time.Second)

			if tc.name == "deploy_started" {
				// The maintenance page is judged: the monitor rolls back
				// during the deploy.
				rb := waitFor(t, bus, run, "rollback.requested", 10*time.Second).GetRollbackRequested()
				if rb.RequestedBy != RequestedBy || rb.Metric != rules.MetricErrorRate {
					t.Errorf("rollback.requested = %v; want the monitor's, on error_rate", rb)
				}
				mc := waitFor(t, bus, run, "monitor.completed", 10*time.Second).GetMonitorCompleted()
				if started.GetMonitorStarted().JudgeFrom != "deploy_started" || !mc.WindowOpened.AsTime().Equal(started.Time.AsTime()) || mc.DuringDeploySamples != 0 {
					t.Errorf("monitor.started judge_from %q, monitor.completed = %v; want the window opened at monitor.started", started.GetMonitorStarted().JudgeFrom, mc)
				}
				if n := len(samplesWhere(t, bus, run, duringDeploy)); n != 0 {
					t.Errorf("%d samples marked during_deploy, though judged", n)
				}
				return
			}

			// ~2 s of deploy (beyond the 1 s AckWait), the 503s sampled.
			natstest.Eventually(t, 10*time.Second, "the maintenance page sampled", func() bool {
				return len(samplesWhere(t, bus, run, duringDeploy)) >= 12 && time.Since(ds.Time.AsTime()) > 2*time.Second
			})
			tg.deploying.Store(false)
			done := deployDone(t, bus, run, time.Now())

			end := waitFor(t, bus, run, "monitor.completed", 15*time.Second)
			mc := end.GetMonitorCompleted()
			h := runHistory(t, bus, run)
			if n, m := len(ofType(h, "threshold.violated")), len(ofType(h, "rollback.requested")); n != 0 || m != 0 {
				t.Fatalf("threshold.violated ×%d, rollback.requested ×%d from the maintenance page; history %v", n, m, types(h))
			}
			if started.GetMonitorStarted().JudgeFrom != "deploy_done" {
				t.Errorf("monitor.started judge_from = %q", started.GetMonitorStarted().JudgeFrom)
			}
			if !mc.WindowOpened.AsTime().Equal(done.Time.AsTime()) {
				t.Errorf("window opened at %v; want deploy.done's time %v", mc.WindowOpened.AsTime(), done.Time.AsTime())
			}
			if took := end.Time.AsTime().Sub(done.Time.AsTime()); took < 3*time.Second {
				t.Errorf("window closed %s after deploy.done; want its whole 3s", took)
			}
			during := samplesWhere(t, bus, run, duringDeploy)
			if int(mc.DuringDeploySamples) != len(during) || len(during) < 12 {
				t.Errorf("during_deploy_samples = %d; %d samples are marked during_deploy", mc.DuringDeploySamples, len(during))
			}
			bad := 0
			for _, s := range during {
				if s.Time.AsTime().Before(ds.Time.AsTime()) || s.Time.AsTime().After(done.Time.AsTime()) {
					t.Errorf("sample %v marked during_deploy outside the deploy", s)
				}
				if s.Metric == rules.MetricErrorRate && s.Value == 1 {
					bad++
				}
			}
			if bad == 0 {
				t.Errorf("no during-deploy sample saw the maintenance page: %v", during)
			}
			// Everything after the deploy is judged and clean; the
			// statistics are the judged samples' only.
			judged := samplesWhere(t, bus, run, func(s *runbookv1.MetricSample) bool {
				return !s.DuringDeploy && !s.Time.AsTime().Before(started.Time.AsTime())
			})
			if int(mc.Samples) != len(judged) || mc.Samples < 14 {
				t.Errorf("monitor.completed samples = %d; %d judged samples published (want ~20)", mc.Samples, len(judged))
			}
			if st := mc.Stats[rules.MetricErrorRate]; st == nil || st.Max != 0 || mc.Max[rules.MetricErrorRate] != 0 || mc.Last[rules.MetricErrorRate] != 0 {
				t.Errorf("error_rate stats %v, max %v: the maintenance page counted", st, mc.Max[rules.MetricErrorRate])
			}
			if !strings.Contains(mc.Reason, "watch window of 3s ended") {
				t.Errorf("reason %q", mc.Reason)
			}
			// Held through the deploy by heartbeats: never redelivered.
			cons, err := bus.JetStream().Consumer(context.Background(), eventbus.AuditStream, Durable)
			if err != nil {
				t.Fatal(err)
			}
			info, err := cons.Info(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if info.NumRedelivered != 0 {
				t.Errorf("%d redeliveries: the held deploy.started was not kept alive", info.NumRedelivered)
			}
		})
	}
}

// A monitor stopped during the deploy and started again after deploy.done
// replays the deploy's samples without judging them and judges the whole
// window from deploy.done.
func TestRestartDuringTheDeployJudgesFromDeployDone(t *testing.T) {
	t.Parallel()
	srv := natstest.Server(t)
	bus := natstest.Bus(t, srv, "monitor-test")
	o := Options{Consumer: eventbus.ConsumerOptions{DrainTimeout: 50 * time.Millisecond, AckWait: 2 * time.Second, Backoff: []time.Duration{50 * time.Millisecond}}}
	stop := runMonitor(t, bus, o)
	tg := newMaintenanceTarget(t)
	tg.deploying.Store(true)
	run := "DEPLOY-20250922-143000-restart-deploy"
	submitDeploying(t, bus, run, maintenancePlan(tg.URL, ""))
	waitFor(t, bus, run, "monitor.started", 10*time.Second)
	natstest.Eventually(t, 10*time.Second, "the maintenance page sampled", func() bool {
		return len(samplesWhere(t, bus, run, duringDeploy)) >= 6
	})
	stop()
	tg.deploying.Store(false)
	done := deployDone(t, bus, run, time.Now())
	// The monitor comes back a while after deploy.done.
	natstest.Eventually(t, 5*time.Second, "time to pass after deploy.done", func() bool {
		return time.Since(done.Time.AsTime()) > 500*time.Millisecond
	})
	during := len(samplesWhere(t, bus, run, duringDeploy))
	runMonitor(t, bus, o)

	end := waitFor(t, bus, run, "monitor.completed", 15*time.Second)
	mc := end.GetMonitorCompleted()
	h := runHistory(t, bus, run)
	if n, m := len(ofType(h, "threshold.violated")), len(ofType(h, "rollback.requested")); n != 0 || m != 0 {
		t.Fatalf("threshold.violated ×%d, rollback.requested ×%d: the replayed deploy samples were judged; history %v", n, m, types(h))
	}
	if n := len(ofType(h, "monitor.started")); n != 1 {
		t.Errorf("monitor.started ×%d; want the one window continued", n)
	}
	if !mc.WindowOpened.AsTime().Equal(done.Time.AsTime()) {
		t.Errorf("window opened at %v; want deploy.done's time %v", mc.WindowOpened.AsTime(), done.Time.AsTime())
	}
	if took := end.Time.AsTime().Sub(done.Time.AsTime()); took < 3*time.Second || took > 4500*time.Millisecond {
		t.Errorf("window closed %s after deploy.done; want on time (3s)", took)
	}
	if int(mc.DuringDeploySamples) != during {
		t.Errorf("during_deploy_samples = %d; %d were taken during the deploy", mc.DuringDeploySamples, during)
	}
	if st := mc.Stats[rules.MetricErrorRate]; st == nil || st.Max != 0 || st.Samples < 5 || mc.Max[rules.MetricErrorRate] != 0 {
		t.Errorf("error_rate stats %v, max %v; want the judged samples only, all clean", st, mc.Max[rules.MetricErrorRate])
	}
}

// The deploy fails and nothing is undone (run.failed), or the change is
// rolled back during the deploy (rollback.started): the window never
// opens.
func TestFailedDeployNeverOpensTheWindow(t *testing.T) {
	t.Parallel()
	e := start(t)
	tg := newMaintenanceTarget(t)
	for _, tc := range []struct {
		name   string
		ev     func(run string) *runbookv1.Event
		reason string
	}{
		{"run.failed", func(run string) *runbookv1.Event {
			return eventbus.New(run, &runbookv1.Event_RunFailed{RunFailed: &runbookv1.RunEnded{Reason: "no rollback steps: nothing was undone"}})
		}, ReasonDeployFailed},
		{"rollback.started", func(run string) *runbookv1.Event {
			return eventbus.New(run, &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{Reason: "deploy failed", RequestedBy: "deployer"}})
		}, "stopped early: rollback started (requested by deployer)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			run := "DEPLOY-20250922-143000-fail-" + strings.ReplaceAll(tc.name, ".", "-")
			submitDeploying(t, e.bus, run, maintenancePlan(tg.URL, ""))
			waitFor(t, e.bus, run, "monitor.started", 10*time.Second)
			publish(t, e.bus, eventbus.New(run, &runbookv1.Event_DeployFailed{DeployFailed: &runbookv1.DeployFinished{Error: "step 1 failed"}}))
			publish(t, e.bus, tc.ev(run))
			mc := waitFor(t, e.bus, run, "monitor.completed", 10*time.Second).GetMonitorCompleted()
			if mc.Reason != tc.reason || mc.WindowOpened != nil || mc.Samples != 0 || mc.RollbackRequested {
				t.Errorf("monitor.completed = %v; want %q and no window", mc, tc.reason)
			}
		})
	}
}
