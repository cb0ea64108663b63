package api

import (
	"testing"

	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// The dashboard's timeline words the rollback's verification, naming the
// failed tests.
func TestDescribeRollbackVerification(t *testing.T) {
	t.Parallel()
	tests := []*runbookv1.TestCase{{Name: "Login", Status: "PASS"}, {Name: "Estimate", Status: "FAIL", Error: "HTTP 500"}}
	for _, c := range []struct {
		ev          *runbookv1.Event
		phase, want string
	}{
		{eventbus.New("R", &runbookv1.Event_RollbackVerified{RollbackVerified: &runbookv1.TestSuiteResult{Passed: 1, Tests: tests[:1]}}),
			"ACT", "rollback verified: 1 of 1 tests passed"},
		{eventbus.New("R", &runbookv1.Event_RollbackVerifyFailed{RollbackVerifyFailed: &runbookv1.TestSuiteResult{Passed: 1, Failed: 1, Tests: tests}}),
			"ACT", "rollback verification FAILED, production state uncertain: 1 of 2 tests failed: Estimate"},
	} {
		if got, phase := describe(c.ev), phaseOf(c.ev.GetType()); got != c.want || phase != c.phase {
			t.Errorf("%s: %s %q, want %s %q", c.ev.GetType(), phase, got, c.phase, c.want)
		}
	}
}
