package report

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// rollback_plan.verify: the suites the tester re-ran after the rollback are
// in the report (rollback.verification, JSON and Markdown); a failed one is
// a CRITICAL issue naming the failed test and the run is ROLLBACK_FAILED;
// until the tester reports the run is not final.
func TestRollbackVerificationInTheReport(t *testing.T) {
	t.Parallel()
	const reason = "api_response_time_p95 3500 > 150% of 2100"
	rolledBack := func() *history {
		h := deployed()
		h.at(3*time.Minute, "rollback.requested", &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{Reason: reason, RequestedBy: "monitor"}})
		h.at(3*time.Minute+time.Second, "rollback.started", &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{
			Reason: reason, RequestedBy: "monitor", Steps: 1, Verify: []string{"critical_paths"}}})
		h.at(3*time.Minute+30*time.Second, "rollback.done", &runbookv1.Event_RollbackDone{RollbackDone: &runbookv1.DeployFinished{StepsSucceeded: 1}})
		return h
	}
	tests := []*runbookv1.TestCase{
		{Name: "User Authentication", Type: "smoke", Status: "PASS", DurationMs: 40, Details: "HTTP 200"},
		{Name: "Estimate Creation", Type: "smoke", Status: "FAIL", DurationMs: 12, Error: "HTTP 500 (expected 201)"},
	}

	t.Run("pending: not final, no report yet", func(t *testing.T) {
		t.Parallel()
		res := generate(t, rolledBack())
		eq(t, "final", res.Final, false)
		eq(t, "status", res.Report.Deployment.Status, "ROLLING_BACK")
		v := res.Report.Rollback.Verification
		if v == nil || v.Status != VerifyPending || len(v.Tests) != 0 || strings.Join(v.Suites, ",") != "critical_paths" {
			t.Fatalf("verification %+v", v)
		}
	})

	t.Run("verified", func(t *testing.T) {
		t.Parallel()
		h := rolledBack()
		h.at(3*time.Minute+32*time.Second, "rollback.verified", &runbookv1.Event_RollbackVerified{RollbackVerified: &runbookv1.TestSuiteResult{
			Passed: 1, Tests: tests[:1]}})
		res := generate(t, h)
		eq(t, "status", res.Report.Deployment.Status, "ROLLED_BACK")
		eq(t, "overall", res.Report.Summary.OverallStatus, "FAIL - rolled back: "+reason+"; verified: 1 suite(s) passed (critical_paths)")
		eq(t, "end", *res.Report.Deployment.EndTime, "2025-09-22T14:33:32.000Z")
		v := res.Report.Rollback.Verification
		eq(t, "verification", *v, RollbackVerification{Suites: []string{"critical_paths"}, Status: VerifyPass, Passed: 1,
			Tests: []TestCase{{Name: "User Authentication", Type: "smoke", Status: "PASS", DurationMS: 40, Details: "HTTP 200"}}})
		// The release's test results do not count the old release's tests.
		eq(t, "test results", res.Report.Summary.TestResults, TestResults{})
		var js struct {
			Rollback struct {
				Verification struct {
					Status string `json:"status"`
					Tests  []struct {
						Name string `json:"name"`
					} `json:"tests"`
				} `json:"verification"`
			} `json:"rollback"`
		}
		if err := json.Unmarshal(res.JSON, &js); err != nil || js.Rollback.Verification.Status != "PASS" || len(js.Rollback.Verification.Tests) != 1 {
			t.Errorf("report JSON rollback.verification %+v (%v):\n%s", js.Rollback.Verification, err, res.JSON)
		}
		md := Markdown(&res.Report, res.QCSummary)
		for _, want := range []string{"### Verification\n\nRe-ran critical_paths after the rollback: PASS, 1 passed, 0 failed.\n",
			"| User Authentication | smoke | PASS | 40 | HTTP 200 |"} {
			if !strings.Contains(md, want) {
				t.Errorf("markdown lacks %q:\n%s", want, md)
			}
		}
	})

	t.Run("verification failed", func(t *testing.T) {
		t.Parallel()
		h := rolledBack()
		h.at(3*time.Minute+32*time.Second, "rollback.verify.failed", &runbookv1.Event_RollbackVerifyFailed{RollbackVerifyFailed: &runbookv1.TestSuiteResult{
			Passed: 1, Failed: 1, Tests: tests}})
		res := generate(t, h)
		eq(t, "status", res.Report.Deployment.Status, "ROLLBACK_FAILED")
		eq(t, "overall", res.Report.Summary.OverallStatus,
			"CRITICAL - rolled back, but the verification failed: 1 of 2 test(s) failed: Estimate Creation — production state uncertain")
		v := res.Report.Rollback.Verification
		if v.Status != VerifyFail || v.Passed != 1 || v.Failed != 1 || len(v.Tests) != 2 || v.Tests[1].Error != "HTTP 500 (expected 201)" {
			t.Fatalf("verification %+v", v)
		}
		var issues []string
		for _, i := range res.Report.Issues {
			if i.Type == "ROLLBACK" {
				issues = append(issues, i.Severity+" "+i.Message)
			}
		}
		eq(t, "rollback issues", issues, []string{"CRITICAL rollback verification failed (re-ran critical_paths): production state uncertain; " +
			"1 of 2 test(s) failed: Estimate Creation (HTTP 500 (expected 201))"})
		if !strings.Contains(res.QCSummary, "Status: ROLLBACK_FAILED") {
			t.Errorf("QC summary:\n%s", res.QCSummary)
		}
		if md := Markdown(&res.Report, res.QCSummary); !strings.Contains(md, "| Estimate Creation | smoke | FAIL | 12 | HTTP 500 (expected 201) |") {
			t.Errorf("markdown lacks the failed test:\n%s", md)
		}
	})

	t.Run("the steps failed: nothing re-run", func(t *testing.T) {
		t.Parallel()
		h := deployed()
		h.at(3*time.Minute+time.Second, "rollback.started", &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{
			Reason: reason, RequestedBy: "monitor", Steps: 1, Verify: []string{"critical_paths"}}})
		h.at(3*time.Minute+30*time.Second, "rollback.failed", &runbookv1.Event_RollbackFailed{RollbackFailed: &runbookv1.DeployFinished{Error: "disk full"}})
		res := generate(t, h)
		eq(t, "status", res.Report.Deployment.Status, "ROLLBACK_FAILED")
		eq(t, "verification", res.Report.Rollback.Verification.Status, VerifyNotRun)
	})

	t.Run("no verify: no verification key", func(t *testing.T) {
		t.Parallel()
		res := generate(t, rolledBackRun())
		if res.Report.Rollback.Verification != nil || strings.Contains(string(res.JSON), `"verification"`) {
			t.Errorf("verification in a report whose rollback named none:\n%s", res.JSON)
		}
	})
}
