package allinone_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus/natstest"
	"github.com/kis-core/runbook/services/reporter/report"
)

// describedRollbackPlan is gatePlan with nothing executable to roll back:
// its rollback steps are described, for the operator.
const describedRollbackPlan = `change_request: {id: CR-GATE-NU, title: "monitor gates, nothing to undo", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
deploy:
  steps:
    - {name: roll out, idempotent: true, command: {argv: ["true"]}}
rollback_plan:
  rollback_steps:
    - "call the on-call engineer"
monitor:
`

// The monitor, a separate process, is killed (SIGKILL) just after the
// window opened, the release turns bad, and the monitor comes back after
// the window's time and one more have passed: the plans have no tests, so
// only the watch window stands between the bad release and SUCCESS. The
// window was not watched: the restarted monitor asks for the rollback
// (fail closed). The run with executable rollback steps ends ROLLED_BACK,
// the one without ends FAILED; neither SUCCESS, and each report says how
// much of the window was observed.
func TestMonitorKilledMidWindowBadReleaseNoTests(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the monitor binary")
	}
	bin := buildService(t, "monitor")
	s := serveWithout(t, "monitor")
	p := &pipeline{bus: natstest.Bus(t, s, "kill-monitor-bad")}
	logPath := filepath.Join(t.TempDir(), "monitor.log")
	mon := startProc(t, bin, logPath, "--nats-url", s.ClientURL(), "--metrics-listen", "127.0.0.1:0", "--ack-wait", "1s", "--insecure-no-auth")
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("monitor log:\n%s", b)
		}
	}()

	const window = 3 * time.Second
	tg := newGateTarget(t)
	monitor := fmt.Sprintf(`  window: 3s
  interval: 250ms
  baseline: 0s
  sources:
    - http_probe: {url: %q, requests: 2}
`, tg.URL)
	runs := map[string]runstate.Status{
		p.submit(t, []byte(gatePlan+monitor)):              runstate.RolledBack,
		p.submit(t, []byte(describedRollbackPlan+monitor)): runstate.Failed,
	}
	last := time.Time{}
	for run := range runs {
		opened := p.waitEvent(t, run, "deploy.done", 30*time.Second, nil).Time.AsTime()
		natstest.Eventually(t, 20*time.Second, "a judged sample of "+run, func() bool {
			ss, err := p.bus.RunSamples(context.Background(), run)
			if err != nil {
				return false
			}
			for _, smp := range ss {
				if !smp.DuringDeploy && !smp.Time.AsTime().Before(opened) {
					return true
				}
			}
			return false
		})
		if opened.After(last) {
			last = opened
		}
	}
	mon.kill() // just after the windows opened
	tg.failing.Store(true)

	// Down for the window and one more: more than the monitor may make up.
	until := last.Add(2*window + time.Second)
	natstest.Eventually(t, time.Until(until)+10*time.Second, "the windows' time and one more to pass", func() bool {
		return time.Now().After(until)
	})
	for run := range runs {
		evs := p.history(t, run)
		if st := runstate.Fold(run, evs); st.Status.Final() {
			t.Fatalf("%s ended %s while its monitor was down: %v", run, st.Status, types(evs))
		}
	}
	mon.start()

	for run, want := range runs {
		rr := p.report(t, run, 60*time.Second)
		evs := p.history(t, run)
		if rr.Status == string(runstate.Success) || rr.Status != string(want) {
			t.Errorf("%s ended %s, want %s: %v\n%s", run, rr.Status, want, types(evs), rr.QcSummary)
			continue
		}
		req := evs[index(evs, "rollback.requested")].GetRollbackRequested()
		if req.GetRequestedBy() != "monitor" || !strings.HasPrefix(req.GetReason(), "not watched: monitor down for ") {
			t.Errorf("%s: rollback.requested %v; want the monitor's: not watched", run, req)
		}
		mc := evs[index(evs, "monitor.completed")].GetMonitorCompleted()
		if !mc.RollbackRequested || mc.WindowMs != window.Milliseconds() || mc.ObservedMs >= mc.WindowMs ||
			mc.MissedTicks <= 0 || mc.DownMs <= window.Milliseconds() {
			t.Errorf("%s: monitor.completed %v; want a window mostly missed, down longer than the window", run, mc)
		}
		var r report.Report
		if err := json.Unmarshal([]byte(rr.ReportJson), &r); err != nil {
			t.Fatal(err)
		}
		if m := r.Monitoring; m == nil || !strings.HasPrefix(m.Observed, "observed ") || !strings.Contains(m.Observed, " of 3 s; the monitor was down ") {
			t.Errorf("%s: report monitoring %+v; want observed N s of 3 s\nevents: %v", run, r.Monitoring, types(evs))
		}
		if !strings.Contains(rr.QcSummary, "\nOverall: FAIL - ") || !strings.Contains(rr.QcSummary, "not watched: monitor down for ") {
			t.Errorf("%s: QC summary:\n%s", run, rr.QcSummary)
		}
		noDuplicateIDs(t, evs)
	}
}
