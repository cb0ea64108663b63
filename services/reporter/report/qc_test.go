package report

import (
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// requestedWith starts a run whose change.requested carries planText.
func requestedWith(planText string) *history {
	h := &history{}
	h.at(0, "change.requested", &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		PlanYaml: planText, PlanSource: "plan.yaml", ChangeId: "CR-9", Title: "t", Requester: "r",
	}}, "kim")
	return h
}

func qcLine(t *testing.T, summary, prefix string) string {
	t.Helper()
	for _, l := range strings.Split(summary, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	t.Fatalf("no %q line in:\n%s", prefix, summary)
	return ""
}

// The header names the plan's systems (KIS_CORE_V3 only when the plan
// says so); Database and Cache come from the plan's postgres and redis
// checks, "not checked" when it has none, Unknown when it has one that
// never reported.
func TestQCHeaderAndChecks(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, plan        string
		checks            []*runbookv1.CheckResult
		header, db, cache string
	}{
		{"the seed's systems, no checks",
			"scope:\n  systems_affected: [\"ERP-AI Service\", \"API Gateway\"]\n", nil,
			"ERP-AI Service, API Gateway Deployment Report - ", "Database: not checked", "Cache: not checked"},
		{"no system named", "change_request: {id: CR-9}\n", nil,
			"Deployment Report - ", "Database: not checked", "Cache: not checked"},
		{"postgres passed, redis failed",
			"scope: {systems_affected: [Estimator Service]}\npreflight:\n  checks:\n    - {name: db, postgres: {dsn_env: DSN}}\n    - {name: cache, redis: {address: \"127.0.0.1:1\"}}\n",
			[]*runbookv1.CheckResult{{Name: "db", Kind: "postgres", Status: pass}, {Name: "cache", Kind: "redis", Status: fail, Blocking: false}},
			"Estimator Service Deployment Report - ", "Database: CONNECTED", "Cache: CONNECTION FAILED"},
		{"a postgres check that never reported",
			"preflight:\n  checks:\n    - {name: db, postgres: {dsn_env: DSN}}\n", nil,
			"Deployment Report - ", "Database: Unknown", "Cache: not checked"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := requestedWith(c.plan)
			if c.checks != nil {
				h.at(time.Second, "preflight.passed", &runbookv1.Event_PreflightPassed{PreflightPassed: &runbookv1.PreflightResult{Checks: c.checks}})
			}
			h.at(2*time.Second, "run.cancelled", &runbookv1.Event_RunCancelled{RunCancelled: &runbookv1.RunEnded{Reason: "stop"}})
			res := generate(t, h)
			first := strings.Split(res.QCSummary, "\n")[0]
			if first != c.header+"2025-09-22T14:30:02.000Z" {
				t.Errorf("header %q, want %q", first, c.header+"…")
			}
			if got := qcLine(t, res.QCSummary, "Database: "); got != c.db {
				t.Errorf("%q, want %q", got, c.db)
			}
			if got := qcLine(t, res.QCSummary, "Cache: "); got != c.cache {
				t.Errorf("%q, want %q", got, c.cache)
			}
			if n := len(strings.Split(res.QCSummary, "\n")); n != QCLines {
				t.Errorf("%d lines", n)
			}
		})
	}
}

// Error Rate and P95 come from what measured them: the judged samples of
// the window (never the maxima, which include the maintenance page served
// during the deploy), else the load test, else the smoke tests; Unknown
// only when nothing measured them.
func TestQCMetricSources(t *testing.T) {
	t.Parallel()
	smoke := func(h *history) {
		h.at(70*time.Second, "test.smoke.failed", &runbookv1.Event_TestSmokeFailed{TestSmokeFailed: &runbookv1.TestSuiteResult{Tests: []*runbookv1.TestCase{
			{Name: "a", Type: "smoke", Status: "PASS", DurationMs: 10}, {Name: "b", Type: "smoke", Status: "PASS", DurationMs: 30},
			{Name: "c", Type: "regression", Status: "FAIL", DurationMs: 250}, {Name: "d", Type: "smoke", Status: "PASS", DurationMs: 20},
		}}})
	}
	cases := []struct {
		name        string
		events      func(h *history)
		errRate     string
		p95, source string
		perf        string
	}{
		{"judged samples", func(h *history) {
			h.at(2*time.Minute, "monitor.completed", &runbookv1.Event_MonitorCompleted{MonitorCompleted: &runbookv1.MonitorCompleted{
				Samples: 10, DuringDeploySamples: 3,
				Max: map[string]float64{MetricErrorRate: 1, MetricP95: 9000},
				Stats: map[string]*runbookv1.MetricStats{
					MetricErrorRate: {Mean: 0.004, Max: 0.008, Samples: 7},
					MetricP95:       {P95: 420.04, Max: 450, Samples: 7},
				}}})
		}, "Error Rate: 0.4%", "Response Time P95: 420ms", SourceMonitor, "Performance: PASS"},
		{"window never judged: the load test", func(h *history) {
			h.at(2*time.Minute, "monitor.completed", &runbookv1.Event_MonitorCompleted{MonitorCompleted: &runbookv1.MonitorCompleted{
				Samples: 0, DuringDeploySamples: 3, Max: map[string]float64{MetricErrorRate: 1}}})
			smoke(h)
			h.at(80*time.Second, "test.load.passed", &runbookv1.Event_TestLoadPassed{TestLoadPassed: &runbookv1.LoadResult{
				Vus: 5, DurationMs: 5000, Requests: 400, Errors: 0, ErrorRate: 0, P95Ms: 12.34, GateP95Ms: 2100, GateErrorRate: 0.01}})
		}, "Error Rate: 0%", "Response Time P95: 12.3ms", SourceLoadTest, "Performance: PASS"},
		{"smoke tests only", smoke, "Error Rate: 25%", "Response Time P95: 250ms", SourceSmoke, "Performance: FAIL"},
		{"nothing measured", func(*history) {}, "Error Rate: Unknown", "Response Time P95: Unknown", "", "Performance: Unknown"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := deployed()
			c.events(h)
			h.at(5*time.Minute, "run.cancelled", &runbookv1.Event_RunCancelled{RunCancelled: &runbookv1.RunEnded{Reason: "stop"}})
			res := generate(t, h)
			for _, want := range []string{c.errRate, c.p95, c.perf} {
				// The value, then the limit it was judged against (plan.Limit.Cite).
				if got := qcLine(t, res.QCSummary, strings.SplitAfter(want, ": ")[0]); got != want && !strings.HasPrefix(got, want+" (") && !strings.HasPrefix(got, want+" - ") {
					t.Errorf("%q, want %q", got, want)
				}
			}
			cur := res.Report.Metrics.Current
			if cur.ErrorRateSource != c.source || cur.ResponseTimeP95Source != c.source {
				t.Errorf("sources %q %q, want %q", cur.ErrorRateSource, cur.ResponseTimeP95Source, c.source)
			}
		})
	}
}

// A failed deploy with no executable rollback step: FAILED, the summary
// and the report say nothing was undone, the plan's described steps are
// the operator's to-do; no rollback was executed.
func TestReportNothingUndone(t *testing.T) {
	t.Parallel()
	h := requestedWith("scope: {systems_affected: [Estimator Service]}\nrollback_plan:\n  rollback_steps: \"1. 트래픽 차단 2. call the DBA\"\ndeploy:\n  steps:\n    - {command: {argv: [\"false\"]}}\n")
	h.at(time.Second, "preflight.passed", &runbookv1.Event_PreflightPassed{PreflightPassed: &runbookv1.PreflightResult{}})
	h.at(2*time.Second, "deploy.started", &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}})
	h.at(2100*time.Millisecond, "deploy.step.failed", &runbookv1.Event_DeployStepFailed{DeployStepFailed: &runbookv1.StepEvent{List: "steps", Name: "false", Kind: "command", Attempt: 1, Error: "false exited 1"}})
	h.at(2200*time.Millisecond, "deploy.failed", &runbookv1.Event_DeployFailed{DeployFailed: &runbookv1.DeployFinished{FailedStep: "false", Error: "step \"false\" failed after 1 attempt(s)"}})
	h.at(2300*time.Millisecond, "rollback.requested", &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{
		Reason: "deploy failed at false: step \"false\" failed after 1 attempt(s)", RequestedBy: "deployer"}})
	reason := plan.NothingUndoneReason("deploy failed at false: step \"false\" failed after 1 attempt(s)", []string{"트래픽 차단", "call the DBA"})
	h.at(2345*time.Millisecond, "run.failed", &runbookv1.Event_RunFailed{RunFailed: &runbookv1.RunEnded{Reason: reason}})
	res := generate(t, h)
	r := res.Report
	eq(t, "status", string(res.Status), "FAILED")
	eq(t, "final", res.Final, true)
	eq(t, "overall", r.Summary.OverallStatus, "FAIL - "+reason)
	if !strings.HasSuffix(res.QCSummary, "\nOverall: FAIL - "+reason) || !strings.Contains(res.QCSummary, "(Duration: 2.345s)") {
		t.Errorf("summary:\n%s", res.QCSummary)
	}
	eq(t, "rollback.executed", r.Rollback.Executed, false)
	eq(t, "rollback.nothing_undone", r.Rollback.NothingUndone, true)
	eq(t, "rollback.requested_by", *r.Rollback.RequestedBy, "deployer")
	if r.Rollback.Duration != nil {
		t.Errorf("rollback.duration %q for a rollback that never ran", *r.Rollback.Duration)
	}
	eq(t, "operator_todo", r.OperatorTodo, []TodoItem{
		{Step: "트래픽 차단", Phase: "rollback", Note: NoteNothingUndone, Time: "2025-09-22T14:30:02.345Z"},
		{Step: "call the DBA", Phase: "rollback", Note: NoteNothingUndone, Time: "2025-09-22T14:30:02.345Z"},
	})
	var rollbackIssue *Issue
	for i := range r.Issues {
		if r.Issues[i].Type == "ROLLBACK" {
			rollbackIssue = &r.Issues[i]
		}
	}
	if rollbackIssue == nil || rollbackIssue.Severity != SeverityCritical || !strings.HasPrefix(rollbackIssue.Message, plan.NothingUndone) {
		t.Errorf("no CRITICAL ROLLBACK issue saying nothing was undone: %+v", r.Issues)
	}
	md := Markdown(&r, res.QCSummary)
	for _, want := range []string{"**" + plan.NothingUndone + "**", "## Operator to-do", "| 1 | 트래픽 차단 | rollback | " + NoteNothingUndone, "| 2 | call the DBA | rollback |"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

// A described step a rollback reached (a manual step event) is the
// operator's to-do, not a step done.
func TestReportManualStepTodo(t *testing.T) {
	t.Parallel()
	h := deployed()
	h.at(2*time.Minute, "rollback.requested", &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{Reason: "tests failed", RequestedBy: "tester"}})
	h.at(2*time.Minute+time.Second, "rollback.started", &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{Reason: "tests failed", RequestedBy: "tester", Steps: 2}})
	h.at(2*time.Minute+2*time.Second, "rollback.step.succeeded", &runbookv1.Event_RollbackStepSucceeded{RollbackStepSucceeded: &runbookv1.StepEvent{
		Index: 0, Name: "트래픽 차단", Kind: "manual", Attempt: 1, List: "rollback", Manual: true, OutputTail: "MANUAL STEP (described in the plan, not executed by runbook): 트래픽 차단"}})
	h.at(2*time.Minute+3*time.Second, "rollback.step.succeeded", &runbookv1.Event_RollbackStepSucceeded{RollbackStepSucceeded: &runbookv1.StepEvent{
		Index: 1, Name: "restore", Kind: "command", Attempt: 1, List: "rollback", DurationMs: 800}})
	h.at(2*time.Minute+4*time.Second, "rollback.done", &runbookv1.Event_RollbackDone{RollbackDone: &runbookv1.DeployFinished{StepsSucceeded: 1}})
	res := generate(t, h)
	eq(t, "status", string(res.Status), "ROLLED_BACK")
	eq(t, "operator_todo", res.Report.OperatorTodo, []TodoItem{{Step: "트래픽 차단", Phase: "rollback", Note: NoteManualStep, Time: "2025-09-22T14:32:02.000Z"}})
	eq(t, "rollback.nothing_undone", res.Report.Rollback.NothingUndone, false)
}
