package vocab

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/plan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// payloadFields are the fields of the Event's payload oneof: one per event
// type of the schema.
func payloadFields() protoreflect.FieldDescriptors {
	return (&runbookv1.Event{}).ProtoReflect().Descriptor().Oneofs().ByName("payload").Fields()
}

// event is an event of run R whose payload field (by its proto name, e.g.
// "deploy_step_started") is msg; idParts follow the type in its id.
func event(t *testing.T, field string, msg proto.Message, idParts ...string) *runbookv1.Event {
	t.Helper()
	ev := &runbookv1.Event{RunId: "R"}
	fd := payloadFields().ByName(protoreflect.Name(field))
	if fd == nil {
		t.Fatalf("no payload field %s in the schema", field)
	}
	ev.ProtoReflect().Set(fd, protoreflect.ValueOfMessage(msg.ProtoReflect()))
	ev.Type = strings.ReplaceAll(field, "_", ".")
	if field == "event_dead_lettered" {
		ev.Type = "event.dead_lettered"
	}
	ev.Id = strings.Join(append([]string{"R", ev.Type}, idParts...), "/")
	return ev
}

// Every event type of the schema has a phase and a sentence of its own:
// the table must name every payload field of the Event oneof, so a new
// event type without wording fails here.
func TestEveryEventTypeIsWorded(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 9, 23, 2, 0, 0, 0, time.UTC)
	local := at.UTC().Format(time.RFC3339)
	clock := at.UTC().Format("15:04:05.000Z")
	ts := timestamppb.New(at)
	step := &runbookv1.StepEvent{List: "steps", Index: 1, Name: "migrate", Kind: "command", Attempt: 2, DurationMs: 40, Error: "exit status 1", ExitCode: 1}
	manual := &runbookv1.StepEvent{List: "rollback", Index: 0, Name: "트래픽 차단", Kind: "manual", Attempt: 1, Manual: true}
	suite := &runbookv1.TestSuiteResult{Passed: 1, Failed: 1, Tests: []*runbookv1.TestCase{
		{Name: "Login", Status: "PASS"}, {Name: "Estimate", Status: "FAIL", Error: "HTTP 500 (expected 201)"}}}
	load := &runbookv1.LoadResult{Vus: 5, Requests: 100, Errors: 30, ErrorRate: 0.3, GateErrorRate: 0.01, P95Ms: 12.34, GateP95Ms: 2100}

	type want struct {
		ev    *runbookv1.Event
		phase string
		text  string
	}
	cases := map[string][]want{
		"change_requested": {{event(t, "change_requested", &runbookv1.ChangeRequested{ChangeId: "CR-1", Title: "estimator v2", Requester: "kim"}),
			PhaseSubmit, `CR-1 "estimator v2" requested by kim`}},
		"change_rejected": {{event(t, "change_rejected", &runbookv1.ChangeRejected{
			Errors:   []*runbookv1.PlanError{{Path: "deploy.steps[0]", Line: 7, Message: "unknown field"}, {Path: "monitor", Message: "missing"}},
			Warnings: []*runbookv1.PlanError{{Path: "x", Message: "y"}}}),
			PhaseSubmit, "✗ plan rejected: 2 error(s), 1 warning(s)\n  line 7: deploy.steps[0]: unknown field\n  monitor: missing"}},
		"preflight_started": {{event(t, "preflight_started", &runbookv1.PreflightStarted{Checks: 3}), PhasePreflight, "started: 3 check(s)"}},
		"preflight_passed": {{event(t, "preflight_passed", &runbookv1.PreflightResult{Checks: []*runbookv1.CheckResult{
			{Status: runbookv1.CheckStatus_CHECK_STATUS_PASS}, {Status: runbookv1.CheckStatus_CHECK_STATUS_WARN}}}),
			PhasePreflight, "✔ passed: 1/2 check(s) passed, 1 warning(s)"}},
		"preflight_failed": {{event(t, "preflight_failed", &runbookv1.PreflightResult{Reason: "api down", Checks: []*runbookv1.CheckResult{
			{Status: runbookv1.CheckStatus_CHECK_STATUS_FAIL}}}),
			PhasePreflight, "✗ FAILED: api down (0/1 check(s) passed)"}},
		"backup_done": {
			{event(t, "backup_done", &runbookv1.BackupDone{Dir: "/b/R-1", Files: []string{"a", "b"}}), PhasePreflight, "backup: 2 file(s) in /b/R-1"},
			{event(t, "backup_done", &runbookv1.BackupDone{Dir: "/b/R-1", Files: []string{"a", "b", "c"}}, "steps", "2"), PhaseAct, "backup step: the run's backup now holds 3 file(s) in /b/R-1"},
		},
		"plan_assessed": {{event(t, "plan_assessed", &runbookv1.PlanAssessed{Level: "HIGH", MaxScore: 12, ApprovalsRequired: []string{"technical_approval"}, RequiresExecutiveApproval: true}),
			PhasePlan, "risk HIGH (max score 12), approvals needed: technical_approval; executive approval required"}},
		"approval_granted": {{event(t, "approval_granted", &runbookv1.Approval{Role: "technical_approval", Approver: "Tina", Comment: "reviewed"}),
			PhaseGate, "✔ approved as technical_approval by Tina — reviewed"}},
		"approval_rejected": {{event(t, "approval_rejected", &runbookv1.Approval{Role: "business_approval", Approver: "Bob", Reason: "not during the sale"}),
			PhaseGate, "✗ REJECTED as business_approval by Bob — not during the sale"}},
		"approval_refused": {{event(t, "approval_refused", &runbookv1.Approval{Role: "security_approval", Approver: "Rita", Reason: "the requester cannot approve their own change"}),
			PhaseGate, "⚠ approval refused: Rita as security_approval — the requester cannot approve their own change"}},
		"run_waiting": {
			{event(t, "run_waiting", &runbookv1.RunWaiting{WaitingFor: []string{"business_approval"}, Until: ts, Deadline: ts}),
				PhaseGate, "⏸ waiting for approval by business_approval; the window opens at " + local + "; expires at " + local},
			{event(t, "run_waiting", &runbookv1.RunWaiting{WaitingFor: []string{"change_window"}, Until: ts}),
				PhaseGate, "⏸ waiting for the change window until " + local},
		},
		"run_expired":   {{event(t, "run_expired", &runbookv1.RunEnded{Reason: "approvals timed out"}), PhaseGate, "✗ EXPIRED: approvals timed out"}},
		"run_cancelled": {{event(t, "run_cancelled", &runbookv1.RunEnded{Reason: "by kim"}), PhaseGate, "✗ CANCELLED: by kim"}},
		"revert_requested": {
			{event(t, "revert_requested", &runbookv1.RevertRequested{ByRun: "R-2", ChangeId: "REVERT-CR-1", Reason: "wrong estimates", RequestedBy: "oncall"}, "R-2"),
				PhaseRollback, "↩ to be reverted by run R-2 (REVERT-CR-1), requested by oncall — wrong estimates"},
			{event(t, "revert_requested", &runbookv1.RevertRequested{ByRun: "R-2"}, "R-2"), PhaseRollback, "↩ to be reverted by run R-2 (no change id), requested by an unnamed requester"},
		},
		"run_failed": {{event(t, "run_failed", &runbookv1.RunEnded{Reason: plan.NothingUndoneReason("deploy failed at x", []string{"트래픽 차단"})}),
			PhaseRollback, "✗✗ FAILED: " + plan.NothingUndoneReason("deploy failed at x", []string{"트래픽 차단"})}},

		"deploy_started":        {{event(t, "deploy_started", &runbookv1.DeployStarted{Steps: 4}), PhaseAct, "deploy started: 4 step(s)"}},
		"deploy_step_started":   {{event(t, "deploy_step_started", &runbookv1.StepEvent{List: "steps", Index: 0, Name: "backup", Attempt: 1}), PhaseAct, "→ [steps 1] backup"}},
		"deploy_step_succeeded": {{event(t, "deploy_step_succeeded", &runbookv1.StepEvent{List: "finally", Index: 0, Name: "traffic on", Attempt: 1, DurationMs: 12}), PhaseAct, "✔ [finally 1] traffic on 12 ms"}},
		"deploy_step_failed":    {{event(t, "deploy_step_failed", step), PhaseAct, "✗ [steps 2] migrate (attempt 2) 40 ms: exit status 1"}},
		"deploy_step_output": {
			{event(t, "deploy_step_output", &runbookv1.StepOutput{Index: 1, Stream: "stderr", Text: "one\r\ntwo\n"}, "steps", "1", "attempt-1", "1"),
				PhaseAct, "  │ stderr: one\n  │ stderr: two"},
			{event(t, "deploy_step_output", &runbookv1.StepOutput{Index: 0, Text: "restored"}, "rollback", "0", "attempt-1", "1"),
				PhaseRollback, "  │ stdout: restored"},
		},
		"deploy_done":   {{event(t, "deploy_done", &runbookv1.DeployFinished{StepsSucceeded: 4, DurationMs: 1234}), PhaseAct, "✔ deploy done: 4 step(s) in 1234 ms"}},
		"deploy_failed": {{event(t, "deploy_failed", &runbookv1.DeployFinished{FailedStep: "migrate", Error: "exit status 1"}), PhaseAct, "✗ deploy FAILED at migrate: exit status 1"}},

		"rollback_requested": {{event(t, "rollback_requested", &runbookv1.RollbackRequested{RequestedBy: "monitor",
			Reason: "error_rate 30% exceeds 150% of its threshold 1% (limit 1.5%)", Rule: "error_rate > 0.015"}),
			PhaseRollback, "requested by monitor: error_rate 30% exceeds 150% of its threshold 1% (limit 1.5%) (rule: error_rate > 0.015)"}},
		"rollback_started": {{event(t, "rollback_started", &runbookv1.RollbackStarted{Steps: 2, Reason: "error_rate 30%", Verify: []string{"critical_paths"}}),
			PhaseRollback, "started: 2 step(s) — error_rate 30%; then re-runs critical_paths to verify it"}},
		"rollback_step_started":   {{event(t, "rollback_step_started", manual), PhaseRollback, "→ [rollback 1] 트래픽 차단 (a described step)"}},
		"rollback_step_succeeded": {{event(t, "rollback_step_succeeded", manual), PhaseRollback, "☐ [rollback 1] 트래픽 차단 — manual — not executed: the operator's to-do"}},
		"rollback_step_failed": {{event(t, "rollback_step_failed", &runbookv1.StepEvent{List: "rollback", Index: 1, Name: "restore", Attempt: 1, DurationMs: 3, Error: "no backup", ExitCode: 2}),
			PhaseRollback, "✗ [rollback 2] restore 3 ms: no backup (exit 2)"}},
		"rollback_done":   {{event(t, "rollback_done", &runbookv1.DeployFinished{StepsSucceeded: 2, DurationMs: 80}), PhaseRollback, "✔ rolled back: 2 step(s) in 80 ms"}},
		"rollback_failed": {{event(t, "rollback_failed", &runbookv1.DeployFinished{Error: "restore failed"}), PhaseRollback, "✗✗ ROLLBACK FAILED — production is in an unknown state: restore failed"}},
		"rollback_verified": {{event(t, "rollback_verified", &runbookv1.TestSuiteResult{Passed: 1, Tests: suite.Tests[:1]}),
			PhaseRollback, "✔ rollback verified: 1 of 1 test(s) passed after the rollback"}},
		"rollback_verify_failed": {{event(t, "rollback_verify_failed", suite),
			PhaseRollback, "✗✗ ROLLBACK VERIFICATION FAILED — production state uncertain: 1 of 2 test(s) failed: Estimate (HTTP 500 (expected 201))"}},

		"monitor_started": {
			{event(t, "monitor_started", &runbookv1.MonitorStarted{Window: "5m", Interval: "15s", JudgeFrom: "deploy_done", BaselineWindow: "6s",
				Baseline: []*runbookv1.MetricSample{{Metric: "error_rate"}, {Metric: "api_response_time_p95"}}}),
				PhaseMonitor, "watching for 5m every 15s, judged from deploy.done (once the new release serves; samples during the deploy recorded, not judged); baseline: 2 sample(s) over 6s before deploy.started"},
			{event(t, "monitor_started", &runbookv1.MonitorStarted{Window: "20s", Interval: "5s", JudgeFrom: "deploy_started", BaselineWindow: "one round at deploy.started",
				Baseline: []*runbookv1.MetricSample{{Metric: "error_rate"}}}),
				PhaseMonitor, "watching for 20s every 5s, judged from deploy.started (monitor.start: deploy_started: the deploy's own samples judged too); baseline: 1 sample(s), one round at deploy.started"},
		},
		"threshold_violated": {
			{event(t, "threshold_violated", &runbookv1.ThresholdViolated{Metric: "error_rate", Value: 0.3, Threshold: 0.01, Severity: "CRITICAL", AutoRollback: true}),
				PhaseMonitor, "⚠ CRITICAL error_rate = 30% > threshold 1%; auto-rollback"},
			{event(t, "threshold_violated", &runbookv1.ThresholdViolated{Metric: "throughput", Value: 3, Threshold: 10, Severity: "CRITICAL", Below: true, Shadow: true, Source: "prometheus_scrape"}),
				PhaseMonitor, "⚠ CRITICAL throughput = 3 fell below minimum 10 (source prometheus_scrape); shadow mode: recorded, never rolls back"},
			{event(t, "threshold_violated", &runbookv1.ThresholdViolated{Metric: "api_response_time_p95", Value: 3500.04, Threshold: 2100, Severity: "CRITICAL",
				WindowCritical: 2, WindowSize: 5, WindowNeeded: 3}),
				PhaseMonitor, "⚠ CRITICAL api_response_time_p95 = 3500ms > threshold 2100ms; 2 of the last 5 samples critical (the gate fails on 3)"},
			{event(t, "threshold_violated", &runbookv1.ThresholdViolated{Metric: "error_rate", Value: math.NaN(), Severity: "CRITICAL", NoData: true, GateFailed: true}),
				PhaseMonitor, "⚠ CRITICAL error_rate: no data (the sources stopped reporting it); the gate failed"},
		},
		"monitor_completed": {
			{event(t, "monitor_completed", &runbookv1.MonitorCompleted{Samples: 20, Violations: 1, WindowOpened: ts, DuringDeploySamples: 12}),
				PhaseMonitor, "window ended: 20 sample(s), 1 violation(s); judged from " + clock + "; 12 sample(s) during the deploy recorded, not judged"},
			{event(t, "monitor_completed", &runbookv1.MonitorCompleted{Reason: "deploy failed", DuringDeploySamples: 3}),
				PhaseMonitor, "window ended: 0 sample(s), 0 violation(s) — deploy failed; the judged window never opened; 3 sample(s) during the deploy recorded, not judged"},
			{event(t, "monitor_completed", &runbookv1.MonitorCompleted{Samples: 32, WindowOpened: ts, WindowMs: 8000, ObservedMs: 8000}),
				PhaseMonitor, "window ended: 32 sample(s), 0 violation(s); judged from " + clock + "; observed 8 s of 8 s"},
			{event(t, "monitor_completed", &runbookv1.MonitorCompleted{Samples: 32, WindowOpened: ts, WindowMs: 8000, ObservedMs: 8000, MissedTicks: 5, DownMs: 1250}),
				PhaseMonitor, "window ended: 32 sample(s), 0 violation(s); judged from " + clock + "; observed 8 s of 8 s; the monitor was down 1.3 s (5 tick(s) missed): the window was extended by as much"},
			{event(t, "monitor_completed", &runbookv1.MonitorCompleted{Samples: 2, Reason: NotWatched(9040), RollbackRequested: true, WindowOpened: ts, WindowMs: 3000, ObservedMs: 600, MissedTicks: 8, DownMs: 9040}),
				PhaseMonitor, "window ended: 2 sample(s), 0 violation(s) — not watched: monitor down for 9 s; judged from " + clock + "; observed 0.6 s of 3 s; the monitor was down 9 s (8 tick(s) missed); rollback requested"},
		},

		"test_started": {{event(t, "test_started", &runbookv1.TestStarted{SmokeTests: 5, LoadTest: true}), PhaseTest, "started: 5 smoke test(s) and a load test"}},
		"test_smoke_passed": {
			{event(t, "test_smoke_passed", &runbookv1.TestSuiteResult{Passed: 5}), PhaseTest, "✔ smoke tests 5/5 passed"},
			{event(t, "test_smoke_passed", &runbookv1.TestSuiteResult{Passed: 3, Tests: []*runbookv1.TestCase{
				{Name: "a", Type: "smoke", Status: "PASS"}, {Name: "b", Type: "smoke", Status: "PASS"}, {Name: "c", Type: "performance", Status: "PASS"}}}),
				PhaseTest, "✔ smoke tests 3/3 passed (2 smoke, 1 performance)"},
		},
		"test_smoke_failed": {{event(t, "test_smoke_failed", suite), PhaseTest, "✗ smoke tests 1/2 passed; failed: Estimate (HTTP 500 (expected 201))"}},
		"test_load_progress": {{event(t, "test_load_progress", &runbookv1.LoadProgress{ElapsedMs: 12500, Requests: 300, Errors: 2, P95Ms: 45.67}),
			PhaseTest, "load: 12s, 300 requests, 2 errors, p95 45.7ms"}},
		"test_load_passed": {{event(t, "test_load_passed", load),
			PhaseTest, "✔ load test passed: 5 VUs, 100 requests, 30 errors, error rate 30% (gate 1%), p95 12.3ms (gate 2100ms)"}},
		"test_load_failed": {{event(t, "test_load_failed", &runbookv1.LoadResult{Vus: 5, Requests: 100, Errors: 30, ErrorRate: 0.3, GateErrorRate: 0.01, P95Ms: 12.34, GateP95Ms: 2100, Reason: "error rate over its gate"}),
			PhaseTest, "✗ load test FAILED: 5 VUs, 100 requests, 30 errors, error rate 30% (gate 1%), p95 12.3ms (gate 2100ms) — error rate over its gate"}},
		"test_passed": {{event(t, "test_passed", &runbookv1.TestOutcome{Passed: 6}), PhaseTest, "✔ all tests passed (6)"}},
		"test_failed": {
			{event(t, "test_failed", &runbookv1.TestOutcome{Failed: 2, Reason: "smoke", RollbackRequested: true}), PhaseTest, "✗ tests FAILED: 2 failed — smoke; rollback requested"},
			{event(t, "test_failed", &runbookv1.TestOutcome{Stopped: "rollback started by monitor: p95 too high",
				Smoke: &runbookv1.TestSuiteResult{Passed: 2, Tests: suite.Tests[:1]}, SmokeNotRun: 1,
				Load: &runbookv1.LoadResult{DurationMs: 12000, Requests: 40, ErrorRate: 0.025, P95Ms: 30}}),
				PhaseTest, "■ tests STOPPED: rollback started by monitor: p95 too high; 1 of 2 smoke test(s) completed before the stop; the load test stopped after 12s: 40 requests, error rate 2.5%, p95 30ms (gates not judged)"},
		},

		"report_ready":      {{event(t, "report_ready", &runbookv1.ReportReady{Status: "ROLLED_BACK"}), PhaseReport, "report ready: ROLLED_BACK"}},
		"notification_sent": {{event(t, "notification_sent", &runbookv1.Notification{Channel: "slack", Target: "env:SLACK_WEBHOOK_URL", Attempts: 1}), PhaseReport, "✔ notified via slack (env:SLACK_WEBHOOK_URL)"}},
		"notification_failed": {{event(t, "notification_failed", &runbookv1.Notification{Channel: "webhook", Target: "http://hooks.internal/x", Attempts: 3, Error: "HTTP 502"}),
			PhaseReport, "✗ notification via webhook (http://hooks.internal/x) FAILED after 3 attempts: HTTP 502"}},
		"event_dead_lettered": {{event(t, "event_dead_lettered", &runbookv1.DeadLettered{Consumer: "deployer", Reason: "undecodable event",
			OriginalSubject: "runbook.R.change.requested", OriginalSequence: 42, Deliveries: 1}),
			PhasePlumbing, "⚠ dead-lettered by deployer after 1 deliveries: runbook.R.change.requested (stream sequence 42): undecodable event"}},
	}

	fields := payloadFields()
	for i := range fields.Len() {
		name := string(fields.Get(i).Name())
		ws, ok := cases[name]
		if !ok {
			t.Errorf("event payload %s has no wording in this table (add it to vocab.Describe and here)", name)
			continue
		}
		for _, w := range ws {
			phase, text, known := describe(w.ev)
			if !known {
				t.Errorf("%s: vocab.describe does not know it", name)
				continue
			}
			if phase != w.phase || text != w.text {
				t.Errorf("%s:\n got %s %q\nwant %s %q", name, phase, text, w.phase, w.text)
			}
			if !slices.Contains(Phases(), phase) {
				t.Errorf("%s: phase %q is not one of %v", name, phase, Phases())
			}
		}
		// An empty payload of every type is worded too, without a panic.
		empty := event(t, name, (&runbookv1.Event{}).ProtoReflect().NewField(fields.Get(i)).Message().Interface())
		if _, text, known := describe(empty); !known || text == "" {
			t.Errorf("%s: empty payload reads %q (known %v)", name, text, known)
		}
	}
	for name := range cases {
		if fields.ByName(protoreflect.Name(name)) == nil {
			t.Errorf("table names %s, which is not a payload of the schema", name)
		}
	}
}

// An event without a known payload reads as its type, in the phase its
// type's first word names.
func TestDescribeUnknown(t *testing.T) {
	t.Parallel()
	if phase, text := Describe(&runbookv1.Event{Type: "future.thing"}); phase != "FUTURE" || text != "future.thing" {
		t.Errorf("unknown type: %s %q", phase, text)
	}
	if phase, text := Describe(&runbookv1.Event{}); phase != PhasePlumbing || text == "" {
		t.Errorf("no payload: %s %q", phase, text)
	}
}

// One unit per metric: the threshold line and the monitor's rollback
// reason print error_rate 0.3 as "30%" on consecutive lines, never the raw
// fraction next to the percentage.
func TestOneUnitPerMetric(t *testing.T) {
	t.Parallel()
	v := 0.3
	_, violated := Describe(event(t, "threshold_violated", &runbookv1.ThresholdViolated{Metric: plan.MetricErrorRate, Value: v, Threshold: 0.01, Severity: "CRITICAL"}))
	reason := plan.MetricErrorRate + " " + plan.FormatMetric(plan.MetricErrorRate, v) + " exceeds 150% of its threshold 1% (limit 1.5%)"
	_, requested := Describe(event(t, "rollback_requested", &runbookv1.RollbackRequested{RequestedBy: "monitor", Reason: reason}))
	for _, line := range []string{violated, requested} {
		if !strings.Contains(line, "error_rate 30%") && !strings.Contains(line, "error_rate = 30%") {
			t.Errorf("%q does not print error_rate 0.3 as 30%%", line)
		}
		if strings.Contains(line, "0.3 ") || strings.Contains(line, "= 0.3") {
			t.Errorf("%q prints the raw fraction", line)
		}
	}
}
