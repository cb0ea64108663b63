package reporter_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
)

// rolledBackDuringTests is a run the monitor rolled back while its tests
// ran: it is final (ROLLED_BACK) before the tester's outcome.
func rolledBackDuringTests(runID string) []*runbookv1.Event {
	evs := successRun(runID)[:7] // up to deploy.done
	const reason = "error_rate 0.3 > 150% of 0.01"
	return append(evs,
		eventbus.New(runID, &runbookv1.Event_TestStarted{TestStarted: &runbookv1.TestStarted{SmokeTests: 3, LoadTest: true}}),
		eventbus.New(runID, &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{Reason: reason, RequestedBy: "monitor"}}),
		eventbus.New(runID, &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{Reason: reason, RequestedBy: "monitor", Steps: 1}}),
		eventbus.New(runID, &runbookv1.Event_RollbackDone{RollbackDone: &runbookv1.DeployFinished{StepsSucceeded: 1}}),
	)
}

// stoppedOutcome is the tester's outcome when a rollback stopped it after
// two of its three smoke tests.
func stoppedOutcome(runID string) *runbookv1.Event {
	return eventbus.New(runID, &runbookv1.Event_TestFailed{TestFailed: &runbookv1.TestOutcome{
		Passed: 1, Failed: 1, SmokeNotRun: 1,
		Reason:  "stopped: rollback started by monitor",
		Stopped: "rollback started by monitor",
		Smoke: &runbookv1.TestSuiteResult{Passed: 1, Failed: 1, Tests: []*runbookv1.TestCase{
			{Name: "health", Type: "smoke", Status: "PASS"},
			{Name: "create order", Type: "smoke", Status: "FAIL", Error: "HTTP 500 (expected 201)"},
		}},
	}})
}

// A run that ended while its tests ran is reported once the tester's
// stopped outcome arrives, with what the tests measured — not at once
// without it (the grace here is a minute: the report comes from the
// outcome, not from the grace running out).
func TestReportWaitsForTheTestersOutcome(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	r := startOpts(t, s, reporter.Options{TestsGrace: time.Minute})
	const run = "RUN-stopped"
	publish(t, bus, rolledBackDuringTests(run)...)
	waiting := r.svc.MetricsForTest().Waiting
	natstest.Eventually(t, 15*time.Second, "the reporter waiting for the tests' outcome", func() bool {
		return testutil.ToFloat64(waiting) == 1
	})
	if n := len(reports(t, bus, run)); n != 0 {
		t.Fatalf("%d report.ready before the tester's outcome", n)
	}
	publish(t, bus, stoppedOutcome(run))
	rr := waitReport(t, bus, run)
	checkSummary(t, rr, run, runstate.RolledBack)
	if !strings.Contains(rr.GetQcSummary(), "\nSmoke Tests: 1/2 passed\n") ||
		!strings.Contains(rr.GetReportJson(), "2 of 3 smoke tests completed before the stop") {
		t.Errorf("the report lacks the stopped tests' results:\n%s", rr.GetQcSummary())
	}
	checkReplay(t, bus, run, rr)
	natstest.Eventually(t, 15*time.Second, "no run waiting any more", func() bool {
		return testutil.ToFloat64(waiting) == 0
	})
}

// A tester that never answers does not leave the run unreported: after the
// grace the report says the tests had no outcome.
func TestReportWithoutTheTestersOutcomeAfterTheGrace(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	r := startOpts(t, s, reporter.Options{TestsGrace: 200 * time.Millisecond})
	const run = "RUN-silent-tester"
	publish(t, bus, rolledBackDuringTests(run)...)
	rr := waitReport(t, bus, run)
	checkSummary(t, rr, run, runstate.RolledBack)
	if !strings.Contains(rr.GetReportJson(), "the tests had not reported an outcome when the run ended") {
		t.Errorf("the report does not say the tests had no outcome:\n%s", rr.GetReportJson())
	}
	checkReplay(t, bus, run, rr)
	if w := testutil.ToFloat64(r.svc.MetricsForTest().Waiting); w != 0 {
		t.Errorf("%v runs still waiting", w)
	}
	// The outcome arriving after the report changes nothing.
	publish(t, bus, stoppedOutcome(run))
	checkReplay(t, bus, run, rr)
}
