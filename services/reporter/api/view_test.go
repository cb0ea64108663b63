package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/api"
	"github.com/kis-core/runbook/services/reporter/report"
)

// The dashboard's run page: a described (manual) step is MANUAL with
// "manual — not executed" instead of a duration, never SUCCEEDED in 0 ms;
// run.failed (nothing undone) is a ROLLBACK event with its reason, worded
// as CLI watch words it; every metric value is in its one unit.
func TestViewManualStepsFailedRunAndUnits(t *testing.T) {
	t.Parallel()
	reason := plan.NothingUndoneReason("tests failed", []string{"트래픽 차단"})
	manual := &runbookv1.StepEvent{Index: 0, Name: "트래픽 차단", Kind: "manual", Attempt: 1, List: "rollback", Manual: true}
	payloads := []any{
		&runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{Metric: "error_rate", Value: 0.3, Threshold: 0.01, Severity: "CRITICAL"}},
		&runbookv1.Event_TestLoadFailed{TestLoadFailed: &runbookv1.LoadResult{Vus: 5, Requests: 100, Errors: 30, ErrorRate: 0.3, GateErrorRate: 0.01, P95Ms: 12.34, GateP95Ms: 2100}},
		&runbookv1.Event_RollbackStepStarted{RollbackStepStarted: manual},
		&runbookv1.Event_RollbackStepSucceeded{RollbackStepSucceeded: manual},
		&runbookv1.Event_RunFailed{RunFailed: &runbookv1.RunEnded{Reason: reason}},
	}
	run := &reporter.Run{RunSummary: reporter.RunSummary{RunID: "R", Status: runstate.Failed}}
	for i, p := range payloads {
		run.Events = append(run.Events, eventbus.Envelope{Event: eventbus.New("R", p, i), Seq: uint64(i + 1)})
	}
	v := api.BuildView(run)
	if len(v.Steps) != 1 || v.Steps[0].Status != "MANUAL" || !v.Steps[0].Manual || v.Steps[0].Note != plan.ManualNotExecuted {
		t.Errorf("manual step row %+v", v.Steps)
	}
	byType := map[string]api.TimelineRow{}
	for _, r := range v.Timeline {
		byType[r.Type] = r
	}
	if r := byType["rollback.step.succeeded"]; !strings.Contains(r.Text, "manual — not executed") || strings.Contains(r.Text, "succeeded") {
		t.Errorf("manual step timeline row %+v", r)
	}
	if r := byType["run.failed"]; r.Phase != "ROLLBACK" || r.Text != "✗✗ FAILED: "+reason {
		t.Errorf("run.failed row %+v", r)
	}
	if r := byType["threshold.violated"]; r.Phase != "MONITOR" || r.Text != "⚠ CRITICAL error_rate = 30% > threshold 1%" {
		t.Errorf("violation row %+v", r)
	}
	if len(v.Violations) != 1 || v.Violations[0].ValueText != "30%" || v.Violations[0].ThresholdText != "1%" {
		t.Errorf("violations %+v", v.Violations)
	}
	if v.Load == nil || v.Load.Status != "FAIL" || v.Load.Text != "p95 12.3ms, error rate 30%, 100 requests, 30 errors, 0 req/s (gates: p95 ≤ 2100ms, error rate ≤ 1%)" {
		t.Errorf("load %+v", v.Load)
	}
	m := api.BuildMetrics(run, nil)
	if u := m.Units["error_rate"]; u.Scale != 100 || u.Suffix != "%" {
		t.Errorf("units %+v", m.Units)
	}
}

// The run page shows what the report says: a rolled-back run whose tests
// the monitor's rollback stopped lists the smoke tests the stopped outcome
// carries and the stopped load test (the page once said "Tests: none"),
// the steps — the described one MANUAL —, the rollback and the QC metrics,
// all as report.Generate has them for the same events.
func TestViewIsTheReport(t *testing.T) {
	t.Parallel()
	const reason = "error_rate 30% exceeds 150% of its threshold 1% (limit 1.5%)"
	smoke := &runbookv1.TestSuiteResult{Passed: 1, Failed: 1, Tests: []*runbookv1.TestCase{
		{Name: "health endpoint", Type: "smoke", Status: "PASS", DurationMs: 12},
		{Name: "create order", Type: "smoke", Status: "FAIL", DurationMs: 400, Error: "HTTP 500 (expected 201)"}}}
	load := &runbookv1.LoadResult{Vus: 3, DurationMs: 3000, Requests: 120, ErrorRate: 0.025, P95Ms: 410, Rps: 40, GateP95Ms: 2100, GateErrorRate: 0.01,
		Reason: "stopped after 3s, gates not judged"}
	step := func(list string, i int32, name string, manual bool) *runbookv1.StepEvent {
		return &runbookv1.StepEvent{List: list, Index: i, Name: name, Kind: "command", Attempt: 1, DurationMs: 5, Manual: manual}
	}
	payloads := []any{
		&runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-9", Title: "v2", Requester: "kim"}},
		&runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}},
		&runbookv1.Event_DeployStepStarted{DeployStepStarted: step("steps", 0, "switch", false)},
		&runbookv1.Event_DeployStepFailed{DeployStepFailed: &runbookv1.StepEvent{List: "steps", Index: 0, Name: "switch", Attempt: 1, Error: "exit status 1", ExitCode: 1}},
		&runbookv1.Event_DeployStepStarted{DeployStepStarted: &runbookv1.StepEvent{List: "steps", Index: 0, Name: "switch", Attempt: 2}},
		&runbookv1.Event_DeployStepSucceeded{DeployStepSucceeded: &runbookv1.StepEvent{List: "steps", Index: 0, Name: "switch", Attempt: 2, DurationMs: 9, OutputTail: "switched\n"}},
		&runbookv1.Event_DeployDone{DeployDone: &runbookv1.DeployFinished{StepsSucceeded: 1}},
		&runbookv1.Event_MonitorStarted{MonitorStarted: &runbookv1.MonitorStarted{Window: "10s", Interval: "1s", JudgeFrom: "deploy_done"}},
		&runbookv1.Event_TestStarted{TestStarted: &runbookv1.TestStarted{SmokeTests: 3, LoadTest: true}},
		&runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{Metric: "throughput", Value: 3, Threshold: 10, Severity: "CRITICAL", Below: true}},
		&runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{Reason: reason, RequestedBy: "monitor"}},
		&runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{Reason: reason, RequestedBy: "monitor", Steps: 2}},
		&runbookv1.Event_TestFailed{TestFailed: &runbookv1.TestOutcome{Stopped: "rollback started by monitor: " + reason, Smoke: smoke, SmokeNotRun: 1, Load: load}},
		&runbookv1.Event_RollbackStepStarted{RollbackStepStarted: step("rollback", 0, "트래픽 차단", true)},
		&runbookv1.Event_RollbackStepSucceeded{RollbackStepSucceeded: step("rollback", 0, "트래픽 차단", true)},
		&runbookv1.Event_RollbackStepStarted{RollbackStepStarted: step("rollback", 1, "restore", false)},
		&runbookv1.Event_RollbackStepSucceeded{RollbackStepSucceeded: step("rollback", 1, "restore", false)},
		&runbookv1.Event_RollbackDone{RollbackDone: &runbookv1.DeployFinished{StepsSucceeded: 2}},
	}
	run := &reporter.Run{RunSummary: reporter.RunSummary{RunID: "R", Status: runstate.RolledBack}}
	var events []*runbookv1.Event
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for i, p := range payloads {
		ev := eventbus.New("R", p, i)
		ev.Time = timestamppb.New(t0.Add(time.Duration(i) * time.Second))
		events = append(events, ev)
		run.Events = append(run.Events, eventbus.Envelope{Event: ev, Seq: uint64(i + 1)})
	}
	res, err := report.Generate("R", events)
	if err != nil {
		t.Fatal(err)
	}
	v := api.BuildView(run)
	if v.Report == nil || !v.ReportFinal || v.Report.Deployment.Status != "ROLLED_BACK" {
		t.Fatalf("report on the page: %+v final %v (%s)", v.Report, v.ReportFinal, v.ReportError)
	}
	// The page's report is the report, byte for byte once encoded.
	if got, err := json.MarshalIndent(v.Report, "", "  "); err != nil || !bytes.Equal(got, res.JSON) {
		t.Errorf("the page's report differs from report.Generate's (%v):\n%s\nwant\n%s", err, got, res.JSON)
	}
	var tests []string
	for _, tc := range v.Tests {
		tests = append(tests, tc.Type+" "+tc.Name+" "+tc.Status)
	}
	want := []string{"smoke health endpoint PASS", "smoke create order FAIL", "performance Load test (3 VUs, 3.000s) STOPPED"}
	if !slices.Equal(tests, want) {
		t.Errorf("tests on the page %q, want %q", tests, want)
	}
	var steps []string
	for _, s := range v.Steps {
		steps = append(steps, fmt.Sprintf("%s/%s/%d %s %s attempt %d", s.Phase, s.List, s.Index, s.Name, s.Status, s.Attempt))
	}
	wantSteps := []string{"deploy/steps/0 switch SUCCEEDED attempt 2", "rollback/rollback/0 트래픽 차단 MANUAL attempt 1", "rollback/rollback/1 restore SUCCEEDED attempt 1"}
	if !slices.Equal(steps, wantSteps) {
		t.Errorf("steps on the page %q, want %q", steps, wantSteps)
	}
	if s := v.Steps[0]; s.OutputTail != "switched\n" || s.DurationMS != 9 || s.Error != "" || s.Started.IsZero() || !s.Ended.After(s.Started) {
		t.Errorf("the retried step at its latest attempt: %+v", s)
	}
	if v.Load == nil || v.Load.Status != "STOPPED" || v.Load.Passed || v.Load.Text != res.LoadTest.Details {
		t.Errorf("load %+v", v.Load)
	}
	if r := v.Report; len(r.OperatorTodo) != 1 || r.OperatorTodo[0].Step != "트래픽 차단" || r.Rollback.RequestedBy == nil || *r.Rollback.RequestedBy != "monitor" ||
		r.Metrics.Current.ErrorRate == nil || *r.Metrics.Current.ErrorRate != 0.025 || r.Metrics.Current.ErrorRateSource != report.SourceLoadTest {
		t.Errorf("report sections: to-do %+v rollback %+v current %+v", r.OperatorTodo, r.Rollback, r.Metrics.Current)
	}
	// The broken min gate reads "fell below", in the timeline and the alert.
	if len(v.Violations) != 1 || !v.Violations[0].Below || v.Violations[0].Text != "⚠ CRITICAL throughput = 3 fell below minimum 10" {
		t.Errorf("violations %+v", v.Violations)
	}
	for _, r := range v.Timeline {
		if r.Type == "threshold.violated" && (r.Phase != "MONITOR" || r.Text != v.Violations[0].Text) {
			t.Errorf("timeline %+v", r)
		}
		if r.Type == "monitor.started" && (r.Phase != "MONITOR" || !strings.Contains(r.Text, "judged from deploy.done")) {
			t.Errorf("timeline %+v", r)
		}
	}
}

// A run in progress: the page shows the report's preview (not final), its
// step running.
func TestViewOfARunInProgress(t *testing.T) {
	t.Parallel()
	run := &reporter.Run{RunSummary: reporter.RunSummary{RunID: "R", Status: runstate.Deploying}}
	for i, p := range []any{
		&runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-9"}},
		&runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}},
		&runbookv1.Event_DeployStepStarted{DeployStepStarted: &runbookv1.StepEvent{List: "steps", Index: 0, Name: "migrate", Attempt: 1}},
	} {
		run.Events = append(run.Events, eventbus.Envelope{Event: eventbus.New("R", p, i), Seq: uint64(i + 1)})
	}
	v := api.BuildView(run)
	if v.Report == nil || v.ReportFinal || v.Report.Deployment.Duration != "In Progress" {
		t.Fatalf("preview %+v final %v", v.Report, v.ReportFinal)
	}
	if len(v.Steps) != 1 || v.Steps[0].Status != report.StepRunning || v.Steps[0].Name != "migrate" {
		t.Errorf("steps %+v", v.Steps)
	}
	if len(v.Tests) != 0 || v.Load != nil {
		t.Errorf("tests %+v load %+v", v.Tests, v.Load)
	}
}

// The phase bar shows where a run stopped: a pre-flight failure stops in
// PRE-FLIGHT, a rejection in PLAN, a failed deploy rolled back in ACT, a
// release rolled back during its tests in TEST (the rollback moves it
// nowhere), a cancel while waiting for approval in PLAN; the phases after
// it are skipped and REPORT is done once reported. A run in progress has
// its current phase; a SUCCESS every phase done.
func TestPhaseBarShowsWhereARunStopped(t *testing.T) {
	t.Parallel()
	row := func(typ, phase string) api.TimelineRow { return api.TimelineRow{Type: typ, Phase: phase} }
	submit, pre := row("change.requested", "SUBMIT"), row("preflight.started", "PRE-FLIGHT")
	plan, gate := row("plan.assessed", "PLAN"), row("approval.granted", "GATE")
	act, mon := row("deploy.started", "ACT"), row("monitor.started", "MONITOR")
	rb, rep := row("rollback.done", "ROLLBACK"), row("report.ready", "REPORT")
	for _, c := range []struct {
		name     string
		status   runstate.Status
		reported bool
		rows     []api.TimelineRow
		want     string
	}{
		{"preflight failed", runstate.Failed, true, []api.TimelineRow{submit, pre, rep}, "stopped skipped skipped skipped done"},
		{"rejected", runstate.Rejected, true, []api.TimelineRow{submit, pre, plan, row("approval.rejected", "GATE"), rep}, "done stopped skipped skipped done"},
		{"deploy failed", runstate.RolledBack, false, []api.TimelineRow{submit, pre, plan, gate, act, rb}, "done done stopped skipped current"},
		{"rolled back in TEST", runstate.RolledBack, true, []api.TimelineRow{submit, pre, plan, act, mon, rb, rep}, "done done done stopped done"},
		{"cancelled waiting", runstate.Cancelled, true, []api.TimelineRow{submit, pre, plan, row("run.cancelled", "GATE"), rep}, "done stopped skipped skipped done"},
		{"cancelled in pre-flight", runstate.Cancelled, false, []api.TimelineRow{submit, pre, row("run.cancelled", "GATE")}, "stopped skipped skipped skipped current"},
		{"waiting", runstate.AwaitingApproval, false, []api.TimelineRow{submit, pre, plan}, "done current pending pending pending"},
		{"success", runstate.Success, true, []api.TimelineRow{submit, pre, plan, act, mon, rep}, "done done done done done"},
	} {
		bar := api.PhaseBarFor(c.status, c.reported, c.rows)
		var got []string
		for i, p := range bar {
			if p.Phase != api.Phases[i] {
				t.Errorf("%s: phase %d is %s", c.name, i, p.Phase)
			}
			got = append(got, p.State)
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%s: %s, want %s", c.name, strings.Join(got, " "), c.want)
		}
	}
}
