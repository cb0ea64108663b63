package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDescribe(t *testing.T) {
	cases := []struct {
		payload any
		phase   string
		want    string
	}{
		{&runbookv1.Event_PreflightFailed{PreflightFailed: &runbookv1.PreflightResult{Reason: "api down"}}, "PRE-FLIGHT", "FAILED: api down"},
		{&runbookv1.Event_DeployStepFailed{DeployStepFailed: &runbookv1.StepEvent{List: "steps", Index: 1, Name: "migrate", Attempt: 2, DurationMs: 40, Error: "exit 1"}}, "ACT", "✗ [steps 2] migrate (attempt 2) 40 ms: exit 1"},
		{&runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{Metric: "error_rate", Value: 0.3, Threshold: 0.01, Severity: "CRITICAL"}}, "MONITOR", "CRITICAL error_rate = 0.3 > threshold 0.01"},
		{&runbookv1.Event_BackupDone{BackupDone: &runbookv1.BackupDone{Dir: "/b/R-1", Files: []string{"a", "b"}}}, "PRE-FLIGHT", "backup: 2 file(s) in /b/R-1"},
		{&runbookv1.Event_RollbackFailed{RollbackFailed: &runbookv1.DeployFinished{Error: "restore failed"}}, "ROLLBACK", "ROLLBACK FAILED"},
		{&runbookv1.Event_ChangeRejected{ChangeRejected: &runbookv1.ChangeRejected{Errors: []*runbookv1.PlanError{{Path: "deploy.steps[0]", Line: 7, Message: "unknown field"}}}}, "SUBMIT", "line 7: deploy.steps[0]: unknown field"},
		{&runbookv1.Event_TestFailed{TestFailed: &runbookv1.TestOutcome{Stopped: "rollback started by monitor: p95 too high"}}, "TEST", "■ tests STOPPED: rollback started by monitor: p95 too high"},
		{&runbookv1.Event_TestFailed{TestFailed: &runbookv1.TestOutcome{Failed: 2, Reason: "smoke"}}, "TEST", "✗ tests FAILED: 2 failed — smoke"},
	}
	for _, c := range cases {
		phase, text := cli.Describe(eventbus.New("R", c.payload))
		if phase != c.phase || !strings.Contains(text, c.want) {
			t.Errorf("%T: %s %q, want %s containing %q", c.payload, phase, text, c.phase, c.want)
		}
	}
}

func TestDescribeStepOutput(t *testing.T) {
	out := &runbookv1.Event_DeployStepOutput{DeployStepOutput: &runbookv1.StepOutput{Index: 1, Stream: "stderr", Text: "one\r\ntwo\n"}}
	phase, text := cli.Describe(eventbus.New("R", out, "steps", 1, "attempt-1", 1))
	want := "  │ stderr: one\n" + strings.Repeat(" ", 21) + "  │ stderr: two"
	if phase != "ACT" || text != want {
		t.Errorf("%s %q, want ACT %q", phase, text, want)
	}
	if phase, _ := cli.Describe(eventbus.New("R", out, "rollback", 0, "attempt-1", 1)); phase != "ROLLBACK" {
		t.Errorf("rollback step output in phase %s", phase)
	}
}
