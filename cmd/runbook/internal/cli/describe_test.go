package cli_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/domain/plan"
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
		{&runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{Metric: "error_rate", Value: 0.3, Threshold: 0.01, Severity: "CRITICAL"}}, "MONITOR", "CRITICAL error_rate = 30% > threshold 1%"},
		{&runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{Metric: "api_response_time_p95", Value: 3500.04, Threshold: 2100, Severity: "CRITICAL"}}, "MONITOR", "CRITICAL api_response_time_p95 = 3500ms > threshold 2100ms"},
		{&runbookv1.Event_TestLoadFailed{TestLoadFailed: &runbookv1.LoadResult{Vus: 5, Requests: 100, ErrorRate: 0.3, GateErrorRate: 0.01, P95Ms: 12.34, GateP95Ms: 2100}}, "TEST", "error rate 30% (gate 1%), p95 12.3ms (gate 2100ms)"},
		{&runbookv1.Event_RunFailed{RunFailed: &runbookv1.RunEnded{Reason: plan.NothingUndoneReason("deploy failed at x", []string{"트래픽 차단"})}}, "ROLLBACK", "✗✗ FAILED: no rollback steps: nothing was undone — manual action needed; rollback requested: deploy failed at x; to do by hand (the plan's described rollback steps): 1. 트래픽 차단"},
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

// A described (manual) step is "manual — not executed" in watch: no ✔ and
// no duration; an executed step keeps both.
func TestDescribeManualStep(t *testing.T) {
	manual := &runbookv1.StepEvent{List: "rollback", Index: 0, Name: "트래픽 차단", Kind: "manual", Attempt: 1, Manual: true,
		OutputTail: "MANUAL STEP (described in the plan, not executed by runbook): 트래픽 차단"}
	phase, text := cli.Describe(eventbus.New("R", &runbookv1.Event_RollbackStepSucceeded{RollbackStepSucceeded: manual}))
	if phase != "ROLLBACK" || text != "☐ [rollback 1] 트래픽 차단 — manual — not executed: the operator's to-do" {
		t.Errorf("manual step: %s %q", phase, text)
	}
	if strings.Contains(text, "✔") || strings.Contains(text, " ms") {
		t.Errorf("a manual step reads as executed: %q", text)
	}
	_, started := cli.Describe(eventbus.New("R", &runbookv1.Event_RollbackStepStarted{RollbackStepStarted: manual}))
	if started != "→ [rollback 1] 트래픽 차단 (a described step)" {
		t.Errorf("manual step started: %q", started)
	}
	run := &runbookv1.StepEvent{List: "rollback", Index: 1, Name: "restore", Kind: "command", Attempt: 1, DurationMs: 12}
	if _, text := cli.Describe(eventbus.New("R", &runbookv1.Event_RollbackStepSucceeded{RollbackStepSucceeded: run})); text != "✔ [rollback 2] restore 12 ms" {
		t.Errorf("executed step: %q", text)
	}
}

// One unit per metric: the threshold line and the rollback reason the
// monitor writes (with the same domain function) print error_rate 0.3 as
// "30%" on consecutive lines, never "0.3" next to "30%".
func TestDescribeOneUnitPerMetric(t *testing.T) {
	v := 0.3
	_, violated := cli.Describe(eventbus.New("R", &runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{
		Metric: plan.MetricErrorRate, Value: v, Threshold: 0.01, Severity: "CRITICAL"}}))
	reason := plan.MetricErrorRate + " " + plan.FormatMetric(plan.MetricErrorRate, v) + " exceeds 150% of its threshold 1% (limit 1.5%)"
	_, requested := cli.Describe(eventbus.New("R", &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{
		RequestedBy: "monitor", Reason: reason}}))
	for _, line := range []string{violated, requested} {
		if !strings.Contains(line, "error_rate 30%") && !strings.Contains(line, "error_rate = 30%") {
			t.Errorf("%q does not print error_rate 0.3 as 30%%", line)
		}
		if strings.Contains(line, "0.3 ") || strings.Contains(line, "= 0.3") {
			t.Errorf("%q prints the raw fraction", line)
		}
	}
}
