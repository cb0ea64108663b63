package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// TestTestsStoppedByRollback: the monitor's rollback stops the tests. What
// they measured before the stop is in the report, also when the tester's
// stopped outcome comes after the final event (but before report.ready);
// the QC summary counts the smoke tests that completed; the report says
// the tests were stopped either way.
func TestTestsStoppedByRollback(t *testing.T) {
	t.Parallel()
	const reason = "error_rate 0.3 > 150% of 0.01"
	partialSmoke := &runbookv1.TestSuiteResult{Passed: 1, Failed: 1, Tests: []*runbookv1.TestCase{
		{Name: "health endpoint", Type: "smoke", Status: "PASS", DurationMs: 12},
		{Name: "create order", Type: "smoke", Status: "FAIL", DurationMs: 400, Error: "HTTP 500 (expected 201)"},
	}}
	partialLoad := &runbookv1.LoadResult{Vus: 5, DurationMs: 3000, Requests: 120, Errors: 0, ErrorRate: 0, P95Ms: 410, Rps: 40,
		GateP95Ms: 2100, GateErrorRate: 0.01, Reason: "stopped after 3s, gates not judged: rollback started by monitor: " + reason}
	stoppedOutcome := func(smoke *runbookv1.TestSuiteResult, notRun int32, load *runbookv1.LoadResult) any {
		return &runbookv1.Event_TestFailed{TestFailed: &runbookv1.TestOutcome{Passed: 1, Failed: 1, Reason: "stopped: rollback started by monitor: " + reason,
			Stopped: "rollback started by monitor: " + reason, Smoke: smoke, SmokeNotRun: notRun, Load: load}}
	}
	requestedBy := func(by string) func(h *history) {
		return func(h *history) {
			h.at(3*time.Minute, "rollback.requested", &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{Reason: reason, RequestedBy: by}})
			h.at(3*time.Minute+100*time.Millisecond, "rollback.started", &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{Reason: reason, RequestedBy: by, Steps: 1}})
		}
	}
	done := func(h *history) {
		h.at(3*time.Minute+time.Second, "rollback.done", &runbookv1.Event_RollbackDone{RollbackDone: &runbookv1.DeployFinished{StepsSucceeded: 1}})
	}
	cases := []struct {
		name string
		// after deploy.done and test.started (3 smoke tests and a load test)
		events func(h *history)
		smoke  string // the QC line
		tests  TestResults
		perf   []string // the performance tests: name status
		issue  string   // the TEST issue (WARNING), "" for none
		// pending: the run is final without the tests' outcome
		// (Result.TestsPending), so a reporter waits for it.
		pending bool
	}{
		{
			name: "stopped in the smoke suite, outcome before rollback.done",
			events: func(h *history) {
				requestedBy("monitor")(h)
				h.at(3*time.Minute+200*time.Millisecond, "test.failed", stoppedOutcome(partialSmoke, 1, nil))
				done(h)
			},
			smoke: "Smoke Tests: 1/2 passed", tests: TestResults{Passed: 1, Failed: 1, Total: 2},
			issue: "tests stopped: rollback started by monitor: " + reason + "; 2 of 3 smoke tests completed before the stop; the load test did not run",
		},
		{
			name: "stopped in the load test, outcome before rollback.done",
			events: func(h *history) {
				h.at(2*time.Minute, "test.smoke.passed", &runbookv1.Event_TestSmokePassed{TestSmokePassed: &runbookv1.TestSuiteResult{Passed: 3, Tests: []*runbookv1.TestCase{
					{Name: "health endpoint", Type: "smoke", Status: "PASS"}, {Name: "create order", Type: "smoke", Status: "PASS"}, {Name: "order history", Type: "smoke", Status: "PASS"}}}})
				requestedBy("monitor")(h)
				h.at(3*time.Minute+200*time.Millisecond, "test.failed", stoppedOutcome(nil, 0, partialLoad))
				done(h)
			},
			smoke: "Smoke Tests: 3/3 passed", tests: TestResults{Passed: 3, Failed: 0, Total: 4},
			perf:  []string{"Load test (5 VUs, 3.000s) STOPPED"},
			issue: "tests stopped: rollback started by monitor: " + reason + "; the load test was stopped after 3.000s (gates not judged)",
		},
		{
			name: "outcome after rollback.done: still in the report (the reporter waits for it)",
			events: func(h *history) {
				requestedBy("monitor")(h)
				done(h)
				h.at(3*time.Minute+2*time.Second, "test.failed", stoppedOutcome(partialSmoke, 1, nil))
			},
			smoke: "Smoke Tests: 1/2 passed", tests: TestResults{Passed: 1, Failed: 1, Total: 2},
			issue: "tests stopped: rollback started by monitor: " + reason + "; 2 of 3 smoke tests completed before the stop; the load test did not run",
		},
		{
			name: "no outcome (the tester never answered): the stop is still said",
			events: func(h *history) {
				requestedBy("monitor")(h)
				done(h)
			},
			pending: true,
			smoke:   "Smoke Tests: 0/0 passed", tests: TestResults{},
			issue: "tests stopped: rollback started by monitor: " + reason + "; the tests had not reported an outcome when the run ended",
		},
		{
			name: "outcome after report.ready: not in the report it re-derives",
			events: func(h *history) {
				requestedBy("monitor")(h)
				done(h)
				h.at(3*time.Minute+20*time.Second, "report.ready", &runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{Status: "ROLLED_BACK"}})
				h.at(3*time.Minute+21*time.Second, "test.failed", stoppedOutcome(partialSmoke, 1, nil))
			},
			pending: true,
			smoke:   "Smoke Tests: 0/0 passed", tests: TestResults{},
			issue: "tests stopped: rollback started by monitor: " + reason + "; the tests had not reported an outcome when the run ended",
		},
		{
			name: "the tester's own rollback: its late outcome is not a stop",
			events: func(h *history) {
				h.at(2*time.Minute, "test.smoke.failed", &runbookv1.Event_TestSmokeFailed{TestSmokeFailed: partialSmoke})
				requestedBy("tester")(h)
				done(h)
				h.at(3*time.Minute+2*time.Second, "test.failed", &runbookv1.Event_TestFailed{TestFailed: &runbookv1.TestOutcome{Passed: 1, Failed: 1, Reason: "1 of 2 smoke tests failed"}})
			},
			smoke: "Smoke Tests: 1/2 passed", tests: TestResults{Passed: 1, Failed: 1, Total: 2},
		},
		{
			name: "tests finished before the monitor's rollback: no stop",
			events: func(h *history) {
				h.at(2*time.Minute, "test.smoke.passed", &runbookv1.Event_TestSmokePassed{TestSmokePassed: &runbookv1.TestSuiteResult{Passed: 1, Tests: partialSmoke.Tests[:1]}})
				h.at(2*time.Minute+time.Second, "test.passed", &runbookv1.Event_TestPassed{TestPassed: &runbookv1.TestOutcome{Passed: 1}})
				requestedBy("monitor")(h)
				done(h)
			},
			smoke: "Smoke Tests: 1/1 passed", tests: TestResults{Passed: 1, Total: 1},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := deployed()
			h.at(62*time.Second, "test.started", &runbookv1.Event_TestStarted{TestStarted: &runbookv1.TestStarted{SmokeTests: 3, LoadTest: true}})
			c.events(h)
			res := generate(t, h)
			eq(t, "status", res.Report.Deployment.Status, "ROLLED_BACK")
			eq(t, "tests pending", res.TestsPending, c.pending)
			if !strings.Contains(res.QCSummary, "\n"+c.smoke+"\n") {
				t.Errorf("QC summary, want %q:\n%s", c.smoke, res.QCSummary)
			}
			eq(t, "test results", res.Report.Summary.TestResults, c.tests)
			var perf []string
			for _, p := range res.Report.Tests.PerformanceTests {
				perf = append(perf, p.Name+" "+p.Status)
				if p.Status == TestStopped && !strings.Contains(p.Details, "p95 410ms, error rate 0%, 120 requests") {
					t.Errorf("stopped load test details %q: not what it measured", p.Details)
				}
			}
			eq(t, "performance tests", perf, c.perf)
			var got []string
			for _, i := range res.Report.Issues {
				if i.Type == "TEST" && i.Severity == SeverityWarning {
					got = append(got, i.Message)
				}
			}
			var want []string
			if c.issue != "" {
				want = []string{c.issue}
			}
			eq(t, "stop issue", got, want)
			if c.perf != nil && res.Report.Summary.PerformanceStatus == PerformanceFail {
				t.Errorf("a stopped load test failed the performance status")
			}
			again := generate(t, h)
			if !bytes.Equal(res.JSON, again.JSON) || res.QCSummary != again.QCSummary {
				t.Error("the same events gave different reports")
			}
		})
	}
}

// TestMonitorCompletedAfterTheEnd: the monitor asks for the rollback of a
// window it was down for, and its monitor.completed (how much it watched)
// lands after the event that ended the run: the run is final but its
// monitoring pending (a reporter waits), and once it is in, the report
// says how much of the window was observed.
func TestMonitorCompletedAfterTheEnd(t *testing.T) {
	t.Parallel()
	const reason = "not watched: monitor down for 6.9 s"
	h := deployed()
	h.at(62*time.Second, "rollback.requested", &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{Reason: reason, RequestedBy: "monitor"}})
	h.at(62*time.Second+100*time.Millisecond, "run.failed", &runbookv1.Event_RunFailed{RunFailed: &runbookv1.RunEnded{Reason: "no rollback steps: nothing was undone"}})
	res := generate(t, h)
	eq(t, "final", res.Final, true)
	eq(t, "monitor pending", res.MonitorPending, true)
	if res.Report.Monitoring != nil {
		t.Errorf("monitoring %+v before monitor.completed", res.Report.Monitoring)
	}
	h.at(62*time.Second+200*time.Millisecond, "monitor.completed", &runbookv1.Event_MonitorCompleted{MonitorCompleted: &runbookv1.MonitorCompleted{
		RollbackRequested: true, Reason: reason, WindowMs: 3000, ObservedMs: 500, MissedTicks: 11, DownMs: 6900, WindowOpened: timestamppb.New(t0.Add(61 * time.Second))}})
	res = generate(t, h)
	eq(t, "monitor pending", res.MonitorPending, false)
	if m := res.Report.Monitoring; m == nil || !strings.HasPrefix(m.Observed, "observed ") {
		t.Errorf("monitoring %+v after monitor.completed; want what was observed", m)
	}
	eq(t, "status", res.Report.Deployment.Status, "FAILED")
}
