package runstate

import (
	"testing"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// rollback_plan.verify: with suites to re-run, rollback.done leaves the run
// ROLLING_BACK until the tester reports; without, rollback.done ends it.
func TestRollbackVerification(t *testing.T) {
	t.Parallel()
	ev := func(id string, p any) *runbookv1.Event {
		e := &runbookv1.Event{Id: id}
		switch p := p.(type) {
		case *runbookv1.Event_DeployStarted:
			e.Payload = p
		case *runbookv1.Event_RollbackStarted:
			e.Payload = p
		case *runbookv1.Event_RollbackDone:
			e.Payload = p
		case *runbookv1.Event_RollbackFailed:
			e.Payload = p
		case *runbookv1.Event_RollbackVerified:
			e.Payload = p
		case *runbookv1.Event_RollbackVerifyFailed:
			e.Payload = p
		}
		return e
	}
	deploy := ev("d", &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{}})
	started := func(verify ...string) *runbookv1.Event {
		return ev("s", &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{Reason: "error_rate 30%", RequestedBy: "monitor", Verify: verify}})
	}
	done := ev("rd", &runbookv1.Event_RollbackDone{RollbackDone: &runbookv1.DeployFinished{StepsSucceeded: 2}})
	failed := ev("rf", &runbookv1.Event_RollbackFailed{RollbackFailed: &runbookv1.DeployFinished{Error: "disk full"}})
	verified := ev("v", &runbookv1.Event_RollbackVerified{RollbackVerified: &runbookv1.TestSuiteResult{Passed: 3,
		Tests: []*runbookv1.TestCase{{Name: "Login", Status: "PASS"}, {Name: "Estimate", Status: "PASS"}, {Name: "Health", Status: "PASS"}}}})
	verifyFailed := ev("vf", &runbookv1.Event_RollbackVerifyFailed{RollbackVerifyFailed: &runbookv1.TestSuiteResult{Passed: 1, Failed: 1,
		Tests: []*runbookv1.TestCase{{Name: "Health", Status: "PASS"}, {Name: "Login", Status: "FAIL", Error: "HTTP 500"}, {Name: "Estimate", Status: "SKIP"}}}})

	for _, tc := range []struct {
		name    string
		events  []*runbookv1.Event
		status  Status
		pending bool
		reason  string
	}{
		{"no verify: rollback.done ends it", []*runbookv1.Event{deploy, started(), done}, RolledBack, false, "rolled back: error_rate 30%"},
		{"no verify: rollback.failed", []*runbookv1.Event{deploy, started(), failed}, RollbackFailed, false, "rollback failed: production is in an unknown state"},
		{"verify: rollback.done is not final", []*runbookv1.Event{deploy, started("critical_paths"), done}, RollingBack, true, ""},
		{"verify: verified", []*runbookv1.Event{deploy, started("critical_paths", "api"), done, verified}, RolledBack, false,
			"rolled back: error_rate 30%; verified: 2 suite(s) passed (critical_paths, api)"},
		{"verify: failed", []*runbookv1.Event{deploy, started("critical_paths"), done, verifyFailed}, RollbackFailed, false,
			"rolled back, but the verification failed: 1 of 3 test(s) failed: Login — production state uncertain"},
		{"verify: the steps failed, nothing re-run", []*runbookv1.Event{deploy, started("critical_paths"), failed}, RollbackFailed, false,
			"rollback failed: production is in an unknown state"},
		{"verify: an outcome after a final status changes nothing", []*runbookv1.Event{deploy, started("critical_paths"), done, verified, verifyFailed}, RolledBack, false,
			"rolled back: error_rate 30%; verified: 1 suite(s) passed (critical_paths)"},
		{"verify: an outcome before rollback.done is not an outcome", []*runbookv1.Event{deploy, started("critical_paths"), verified}, RollingBack, false, ""},
		{"verify: redelivered rollback.done", []*runbookv1.Event{deploy, started("critical_paths"), done, done}, RollingBack, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := Fold("R", tc.events)
			if s.Status != tc.status || s.VerifyPending != tc.pending || s.FinalReason != tc.reason || s.Status.Final() == (tc.status == RollingBack) {
				t.Errorf("status %s pending %t reason %q; want %s %t %q", s.Status, s.VerifyPending, s.FinalReason, tc.status, tc.pending, tc.reason)
			}
		})
	}
}
