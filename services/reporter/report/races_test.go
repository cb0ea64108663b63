package report

import (
	"testing"
	"time"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// A cancel and deploy.started race; the stream's order decides, as at the
// deployer (runstate): the cancel first, the run ends CANCELLED and
// deployed nothing (the retrospective says so); deploy.started first, the
// cancel stops nothing and the run goes on to SUCCESS.
func TestCancelRacesDeployStarted(t *testing.T) {
	t.Parallel()
	cancelled := func(h *history, at time.Duration) {
		h.at(at, "run.cancelled", &runbookv1.Event_RunCancelled{RunCancelled: &runbookv1.RunEnded{Reason: "cancelled by kim: wrong day"}}, "kim")
	}

	won := &history{}
	requested(won)
	won.at(5*time.Second, "preflight.passed", &runbookv1.Event_PreflightPassed{PreflightPassed: &runbookv1.PreflightResult{Checks: checks(pass, pass)}})
	cancelled(won, 9*time.Second)
	won.at(10*time.Second, "deploy.started", &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 2}})
	res := generate(t, won)
	if res.Status != "CANCELLED" || res.Report.Summary.OverallStatus != "CANCELLED - cancelled by kim: wrong day" {
		t.Fatalf("cancel first: %s, %q", res.Status, res.Report.Summary.OverallStatus)
	}
	r, err := Retro(runID, won.events)
	if err != nil {
		t.Fatal(err)
	}
	if r.Deployed || r.ActualDuration != 0 {
		t.Errorf("cancel first: the retrospective says it deployed (%v, %s)", r.Deployed, r.ActualDuration)
	}

	lost := deployed()
	cancelled(lost, 30*time.Second) // during the deploy: stops nothing
	lost.at(62*time.Second, "test.started", &runbookv1.Event_TestStarted{TestStarted: &runbookv1.TestStarted{SmokeTests: 1}})
	lost.at(65*time.Second, "test.passed", &runbookv1.Event_TestPassed{TestPassed: &runbookv1.TestOutcome{Passed: 1}})
	lost.at(90*time.Second, "monitor.completed", &runbookv1.Event_MonitorCompleted{MonitorCompleted: &runbookv1.MonitorCompleted{Reason: "watch window of 30s ended"}})
	res = generate(t, lost)
	if res.Status != "SUCCESS" || !res.Final {
		t.Fatalf("deploy first: %s (final %v), want SUCCESS", res.Status, res.Final)
	}
	if r, err = Retro(runID, lost.events); err != nil {
		t.Fatal(err)
	}
	if !r.Deployed {
		t.Error("deploy first: the retrospective says nothing deployed")
	}
}
