package cli_test

import (
	"testing"

	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// The rollback's verification (rollback_plan.verify) reads in watch as
// part of the rollback, a failure naming each failed test and why.
func TestDescribeRollbackVerification(t *testing.T) {
	t.Parallel()
	tests := []*runbookv1.TestCase{{Name: "Login", Status: "PASS"}, {Name: "Estimate", Status: "FAIL", Error: "HTTP 500 (expected 201)"}}
	for _, c := range []struct {
		payload any
		want    string
	}{
		{&runbookv1.Event_RollbackVerified{RollbackVerified: &runbookv1.TestSuiteResult{Passed: 1, Tests: tests[:1]}},
			"✔ rollback verified: 1 of 1 test(s) passed after the rollback"},
		{&runbookv1.Event_RollbackVerifyFailed{RollbackVerifyFailed: &runbookv1.TestSuiteResult{Passed: 1, Failed: 1, Tests: tests}},
			"✗✗ ROLLBACK VERIFICATION FAILED — production state uncertain: 1 of 2 test(s) failed: Estimate (HTTP 500 (expected 201))"},
	} {
		phase, text := cli.Describe(eventbus.New("R", c.payload))
		if phase != "ROLLBACK" || text != c.want {
			t.Errorf("%T: %s %q, want ROLLBACK %q", c.payload, phase, text, c.want)
		}
	}
}
