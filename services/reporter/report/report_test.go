package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/plan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const runID = "DEPLOY-20250922-143000"

var t0 = time.Date(2025, 9, 22, 14, 30, 0, 0, time.UTC)

const planYAML = `change_request: {id: CR-2025-001, title: "Order API v2", type: enhancement, priority: medium}
requester: {name: Kim Operator, role: DevOps, contact: ops@example.com}
scope: {systems_affected: [KIS_CORE_V3]}
preflight:
  checks:
    - {name: api up, http: {url: "http://127.0.0.1:8080/health"}}
    - {name: orders db, postgres: {dsn_env: ORDERS_DSN}}
    - {name: session cache, redis: {address: "127.0.0.1:6379"}}
monitor:
  window: 30m
  thresholds: {api_response_time_p95: 2100, error_rate: 0.01}
`

// history builds the events of one run: each call to at adds an event at
// t0+offset, with a deterministic id.
type history struct {
	events []*runbookv1.Event
}

func (h *history) at(offset time.Duration, typ string, payload any, actor ...string) *runbookv1.Event {
	ev := &runbookv1.Event{
		Id:     runID + "/" + typ + "/" + offset.String(),
		RunId:  runID,
		Type:   typ,
		Time:   timestamppb.New(t0.Add(offset)),
		Source: "test/1",
	}
	if len(actor) > 0 {
		ev.Actor = actor[0]
	}
	setPayload(ev, payload)
	h.events = append(h.events, ev)
	return ev
}

// setPayload sets the oneof wrapper p (e.g. *runbookv1.Event_DeployDone).
func setPayload(ev *runbookv1.Event, p any) {
	reflect.ValueOf(ev).Elem().FieldByName("Payload").Set(reflect.ValueOf(p))
}

func requested(h *history) {
	h.at(0, "change.requested", &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		PlanYaml: planYAML, PlanSource: "plan.yaml", ChangeId: "CR-2025-001", Title: "Order API v2", Requester: "Kim Operator",
	}}, "kim")
}

func checks(status ...runbookv1.CheckStatus) []*runbookv1.CheckResult {
	return []*runbookv1.CheckResult{
		{Name: "api up", Kind: "http", Status: runbookv1.CheckStatus_CHECK_STATUS_PASS, Value: "HTTP 200", Blocking: true},
		{Name: "orders db", Kind: "postgres", Status: status[0], Value: "12 ms", Blocking: true, Message: msgFor(status[0])},
		{Name: "session cache", Kind: "redis", Status: status[1], Value: "PONG", Blocking: true},
	}
}

func msgFor(s runbookv1.CheckStatus) string {
	if s == runbookv1.CheckStatus_CHECK_STATUS_FAIL {
		return "connection refused"
	}
	return ""
}

var pass, fail = runbookv1.CheckStatus_CHECK_STATUS_PASS, runbookv1.CheckStatus_CHECK_STATUS_FAIL

// deployed is a run through a successful deploy (the health step needed a
// second attempt) with the monitor's baseline.
func deployed() *history {
	h := &history{}
	requested(h)
	h.at(1*time.Second, "preflight.started", &runbookv1.Event_PreflightStarted{PreflightStarted: &runbookv1.PreflightStarted{Checks: 3}})
	h.at(5*time.Second, "preflight.passed", &runbookv1.Event_PreflightPassed{PreflightPassed: &runbookv1.PreflightResult{Checks: checks(pass, pass)}})
	h.at(10*time.Second, "deploy.started", &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 2}})
	h.at(11*time.Second, "monitor.started", &runbookv1.Event_MonitorStarted{MonitorStarted: &runbookv1.MonitorStarted{Window: "30m", Interval: "30s",
		Baseline: []*runbookv1.MetricSample{{Metric: MetricP95, Value: 800}, {Metric: MetricErrorRate, Value: 0.001}, {Metric: "cpu_utilization", Value: 0}}}})
	h.at(40*time.Second, "deploy.step.succeeded", &runbookv1.Event_DeployStepSucceeded{DeployStepSucceeded: &runbookv1.StepEvent{Index: 0, Name: "roll out", Kind: "command", Attempt: 1, List: "steps"}})
	h.at(50*time.Second, "deploy.step.failed", &runbookv1.Event_DeployStepFailed{DeployStepFailed: &runbookv1.StepEvent{Index: 0, Name: "api health", Kind: "health", Attempt: 1, List: "health", Error: "HTTP 503"}})
	h.at(60*time.Second, "deploy.step.succeeded", &runbookv1.Event_DeployStepSucceeded{DeployStepSucceeded: &runbookv1.StepEvent{Index: 0, Name: "api health", Kind: "health", Attempt: 2, List: "health"}})
	h.at(61*time.Second, "deploy.done", &runbookv1.Event_DeployDone{DeployDone: &runbookv1.DeployFinished{StepsSucceeded: 2, DurationMs: 51000}})
	return h
}

func successRun() *history {
	h := deployed()
	h.at(62*time.Second, "test.started", &runbookv1.Event_TestStarted{TestStarted: &runbookv1.TestStarted{SmokeTests: 3, LoadTest: true}})
	h.at(65*time.Second, "test.smoke.passed", &runbookv1.Event_TestSmokePassed{TestSmokePassed: &runbookv1.TestSuiteResult{Passed: 3, Tests: []*runbookv1.TestCase{
		{Name: "health endpoint", Type: "smoke", Status: "PASS", DurationMs: 12},
		{Name: "create order", Type: "smoke", Status: "PASS", DurationMs: 140, Details: "HTTP 201"},
		{Name: "order history", Type: "regression", Status: "PASS", DurationMs: 90},
	}}})
	h.at(6*time.Minute, "test.load.passed", &runbookv1.Event_TestLoadPassed{TestLoadPassed: &runbookv1.LoadResult{
		Vus: 50, DurationMs: 300000, Requests: 15000, Errors: 30, ErrorRate: 0.002, AvgMs: 300, P95Ms: 1234.56, MaxMs: 2000, Rps: 50, GateP95Ms: 2100, GateErrorRate: 0.01}})
	h.at(6*time.Minute+time.Second, "test.passed", &runbookv1.Event_TestPassed{TestPassed: &runbookv1.TestOutcome{Passed: 4}})
	// Max holds the 503s of the maintenance page served during the deploy
	// (during_deploy_samples); the stats are over the judged samples only.
	h.at(30*time.Minute+11*time.Second+250*time.Millisecond, "monitor.completed", &runbookv1.Event_MonitorCompleted{MonitorCompleted: &runbookv1.MonitorCompleted{
		Samples: 60, DuringDeploySamples: 4,
		Last: map[string]float64{MetricP95: 900, MetricErrorRate: 0.002, "cpu_utilization": 40},
		Max:  map[string]float64{MetricP95: 4000, MetricErrorRate: 1, "cpu_utilization": 55},
		Stats: map[string]*runbookv1.MetricStats{
			MetricP95:       {Min: 700, Max: 1400, Mean: 950, P95: 1300, Samples: 60},
			MetricErrorRate: {Min: 0, Max: 0.003, Mean: 0.002, P95: 0.003, Samples: 60},
		},
	}})
	// After the final event: not part of the report.
	h.at(31*time.Minute, "report.ready", &runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{Status: "SUCCESS"}})
	return h
}

func rolledBackRun() *history {
	h := deployed()
	h.at(62*time.Second, "test.started", &runbookv1.Event_TestStarted{TestStarted: &runbookv1.TestStarted{SmokeTests: 2, LoadTest: true}})
	h.at(65*time.Second, "test.smoke.passed", &runbookv1.Event_TestSmokePassed{TestSmokePassed: &runbookv1.TestSuiteResult{Passed: 2, Tests: []*runbookv1.TestCase{
		{Name: "health endpoint", Type: "smoke", Status: "PASS", DurationMs: 12},
		{Name: "create order", Type: "smoke", Status: "PASS", DurationMs: 140},
	}}})
	h.at(3*time.Minute, "threshold.violated", &runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{
		Metric: MetricP95, Value: 3500, Threshold: 2100, Severity: "CRITICAL", Source: "prometheus_scrape", AutoRollback: true}})
	h.at(3*time.Minute+time.Second, "rollback.requested", &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{
		Reason: "api_response_time_p95 3500 > 150% of 2100", RequestedBy: "monitor", Metric: MetricP95, Value: 3500, Threshold: 2100}})
	h.at(3*time.Minute+1500*time.Millisecond, "test.failed", &runbookv1.Event_TestFailed{TestFailed: &runbookv1.TestOutcome{
		Passed: 2, Stopped: "rollback started by monitor: api_response_time_p95 3500 > 150% of 2100",
		Smoke: &runbookv1.TestSuiteResult{Passed: 2, Tests: []*runbookv1.TestCase{
			{Name: "health endpoint", Type: "smoke", Status: "PASS", DurationMs: 12},
			{Name: "create order", Type: "smoke", Status: "PASS", DurationMs: 140},
		}},
		Load: &runbookv1.LoadResult{Vus: 50, DurationMs: 115250, Requests: 5000, Errors: 150, ErrorRate: 0.03, AvgMs: 900, P95Ms: 3321.5, MaxMs: 5000, Rps: 43.4,
			GateP95Ms: 2100, GateErrorRate: 0.01, Reason: "stopped: rollback started by monitor"}}})
	h.at(3*time.Minute+2*time.Second, "rollback.started", &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{
		Reason: "api_response_time_p95 3500 > 150% of 2100", RequestedBy: "monitor", Steps: 1}})
	h.at(3*time.Minute+30*time.Second, "rollback.step.succeeded", &runbookv1.Event_RollbackStepSucceeded{RollbackStepSucceeded: &runbookv1.StepEvent{Index: 0, Name: "restore model", Kind: "command", Attempt: 1}})
	h.at(4*time.Minute+32*time.Second, "rollback.done", &runbookv1.Event_RollbackDone{RollbackDone: &runbookv1.DeployFinished{StepsSucceeded: 1}})
	// The monitor's end lands after the rollback: not part of the report.
	h.at(4*time.Minute+40*time.Second, "monitor.completed", &runbookv1.Event_MonitorCompleted{MonitorCompleted: &runbookv1.MonitorCompleted{
		RollbackRequested: true, Max: map[string]float64{MetricP95: 9999, MetricErrorRate: 0.5}}})
	return h
}

func preflightFailedRun() *history {
	h := &history{}
	requested(h)
	h.at(1*time.Second, "preflight.started", &runbookv1.Event_PreflightStarted{PreflightStarted: &runbookv1.PreflightStarted{Checks: 3}})
	h.at(4*time.Second+500*time.Millisecond, "preflight.failed", &runbookv1.Event_PreflightFailed{PreflightFailed: &runbookv1.PreflightResult{
		Checks: checks(fail, pass), Reason: "blocking check orders db failed"}})
	return h
}

func invalidRun() *history {
	h := &history{}
	requested(h)
	h.at(200*time.Millisecond, "change.rejected", &runbookv1.Event_ChangeRejected{ChangeRejected: &runbookv1.ChangeRejected{
		Errors: []*runbookv1.PlanError{
			{Path: "deploy.steps[2].timeout", Line: 12, Column: 16, Value: "soon", Message: "not a duration; write e.g. 5m"},
			{Path: "monitor.thresholds.error_rate", Line: 20, Column: 5, Value: "-1", Message: "must be > 0"},
		},
		Warnings: []*runbookv1.PlanError{{Path: "approval.technical_approval.status", Line: 30, Column: 7, Value: "approved", Message: "ignored: approvals are events"}},
	}})
	return h
}

func generate(t *testing.T, h *history) *Result {
	t.Helper()
	res, err := Generate(runID, h.events)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return res
}

func TestQCSummary(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		run  func() *history
		want string
	}{
		{"success", successRun, `KIS_CORE_V3 Deployment Report - 2025-09-22T15:00:11.250Z
============================================
Deployment ID: DEPLOY-20250922-143000
Status: SUCCESS (Duration: 30m 11.250s)
Smoke Tests: 2/2 passed
Performance: PASS
Critical Issues: 0
API Health: HEALTHY
Database: CONNECTED
Cache: CONNECTED
Error Rate: 0.2% (threshold 1%, rollback above 1.5%)
Response Time P95: 1300ms (threshold 2100ms, rollback above 3150ms)
============================================
Overall: PASS - change deployed and verified`},
		{"rolled back by the monitor", rolledBackRun, `KIS_CORE_V3 Deployment Report - 2025-09-22T14:34:32.000Z
============================================
Deployment ID: DEPLOY-20250922-143000
Status: ROLLED_BACK (Duration: 4m 32.000s)
Smoke Tests: 2/2 passed
Performance: FAIL - api_response_time_p95 3321.5ms (threshold 2100ms, rollback above 3150ms); error_rate 3% (threshold 1%, rollback above 1.5%)
Critical Issues: 1
API Health: HEALTHY
Database: CONNECTED
Cache: CONNECTED
Error Rate: 3% (threshold 1%, rollback above 1.5%)
Response Time P95: 3321.5ms (threshold 2100ms, rollback above 3150ms)
============================================
Overall: FAIL - rolled back: api_response_time_p95 3500 > 150% of 2100`},
		{"pre-flight failed", preflightFailedRun, `KIS_CORE_V3 Deployment Report - 2025-09-22T14:30:04.500Z
============================================
Deployment ID: DEPLOY-20250922-143000
Status: FAILED (Duration: 4.500s)
Smoke Tests: 0/0 passed
Performance: Unknown
Critical Issues: 1
API Health: Unknown
Database: CONNECTION FAILED
Cache: CONNECTED
Error Rate: Unknown
Response Time P95: Unknown
============================================
Overall: FAIL - pre-flight failed: blocking check orders db failed`},
		{"invalid plan", invalidRun, `KIS_CORE_V3 Deployment Report - 2025-09-22T14:30:00.200Z
============================================
Deployment ID: DEPLOY-20250922-143000
Status: INVALID (Duration: 0.200s)
Smoke Tests: 0/0 passed
Performance: Unknown
Critical Issues: 2
API Health: Unknown
Database: Unknown
Cache: Unknown
Error Rate: Unknown
Response Time P95: Unknown
============================================
Overall: INVALID - the plan is invalid (2 errors); nothing ran`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			res := generate(t, c.run())
			if !res.Final {
				t.Fatalf("run not final: %s", res.Status)
			}
			got := strings.Split(res.QCSummary, "\n")
			want := strings.Split(c.want, "\n")
			if len(got) != QCLines {
				t.Errorf("summary has %d lines, want %d:\n%s", len(got), QCLines, res.QCSummary)
			}
			content := 0
			for _, l := range got {
				if l != qcRule {
					content++
				}
			}
			if content != QCContentLines {
				t.Errorf("summary has %d content lines, want %d", content, QCContentLines)
			}
			for i := range max(len(got), len(want)) {
				var g, w string
				if i < len(got) {
					g = got[i]
				}
				if i < len(want) {
					w = want[i]
				}
				if g != w {
					t.Errorf("line %d:\n got %q\nwant %q", i+1, g, w)
				}
			}
		})
	}
}

// TestReportGolden compares the whole JSON with testdata/<name>.json
// (go test -run TestReportGolden -update rewrites them) and checks the
// fields the seed fixes one by one.
func TestReportGolden(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		run   func() *history
		check func(t *testing.T, r *Report)
	}{
		{"success", successRun, func(t *testing.T, r *Report) {
			eq(t, "deployment.id", r.Deployment.ID, runID)
			eq(t, "deployment.startTime", r.Deployment.StartTime, "2025-09-22T14:30:00.000Z")
			eq(t, "deployment.endTime", *r.Deployment.EndTime, "2025-09-22T15:00:11.250Z")
			eq(t, "deployment.duration", r.Deployment.Duration, "30m 11.250s")
			eq(t, "deployment.status", r.Deployment.Status, "SUCCESS")
			eq(t, "deployment.operator", r.Deployment.Operator, "kim")
			eq(t, "change", r.Change, Change{ID: "CR-2025-001", Title: "Order API v2", Requester: "Kim Operator", Type: "enhancement", Priority: "medium", Systems: []string{"KIS_CORE_V3"}})
			eq(t, "summary.test_results", r.Summary.TestResults, TestResults{Passed: 4, Failed: 0, Total: 4})
			eq(t, "summary.performance_status", r.Summary.PerformanceStatus, "PASS")
			eq(t, "smoke tests", len(r.Tests.SmokeTests), 2)
			eq(t, "regression tests", len(r.Tests.RegressionTests), 1)
			eq(t, "performance test", r.Tests.PerformanceTests[0].Name, "Load test (50 VUs, 5m 0.000s)")
			eq(t, "performance test details", r.Tests.PerformanceTests[0].Details, "p95 1234.6ms, error rate 0.2%, 15000 requests, 30 errors, 50 req/s (gates: p95 ≤ 2100ms, error rate ≤ 1%)")
			eq(t, "error rate: the judged samples' mean", *r.Metrics.Current.ErrorRate, 0.002)
			eq(t, "p95: the judged samples' p95", *r.Metrics.Current.ResponseTimeP95, 1300.0)
			eq(t, "metric sources", r.Metrics.Current.ErrorRateSource+" "+r.Metrics.Current.ResponseTimeP95Source, SourceMonitor+" "+SourceMonitor)
			eq(t, "systems", r.Change.Systems, []string{"KIS_CORE_V3"})
			eq(t, "operator_todo", r.OperatorTodo, []TodoItem{})
			eq(t, "pre p95", r.Metrics.PreDeployment[MetricP95], 800.0)
			eq(t, "post p95", r.Metrics.PostDeployment[MetricP95], 900.0)
			eq(t, "comparison p95", r.Metrics.Comparison[MetricP95].Change, 100.0)
			eq(t, "comparison p95 %", *r.Metrics.Comparison[MetricP95].ChangePercent, 12.5)
			eq(t, "comparison error_rate", r.Metrics.Comparison[MetricErrorRate].Change, 0.001)
			if r.Metrics.Comparison["cpu_utilization"].ChangePercent != nil {
				t.Errorf("change_percent from a 0 baseline should be null")
			}
			eq(t, "issues", len(r.Issues), 1)
			eq(t, "flaky health step is a warning", r.Issues[0].Severity, SeverityWarning)
			eq(t, "rollback.executed", r.Rollback.Executed, false)
			if r.Rollback.Reason != nil || r.Rollback.Duration != nil {
				t.Errorf("rollback reason/duration should be null: %+v", r.Rollback)
			}
			eq(t, "recommendations", len(r.Recommendations), 0)
		}},
		{"rolled_back", rolledBackRun, func(t *testing.T, r *Report) {
			eq(t, "deployment.status", r.Deployment.Status, "ROLLED_BACK")
			eq(t, "rollback.executed", r.Rollback.Executed, true)
			eq(t, "rollback.reason", *r.Rollback.Reason, "api_response_time_p95 3500 > 150% of 2100")
			eq(t, "rollback.duration", *r.Rollback.Duration, "1m 30.000s")
			eq(t, "rollback.requested_by", *r.Rollback.RequestedBy, "monitor")
			eq(t, "post_deployment (monitor.completed after the final event)", len(r.Metrics.PostDeployment), 0)
			eq(t, "p95 source (window cut short: the load test)", r.Metrics.Current.ResponseTimeP95Source, SourceLoadTest)
			eq(t, "p95 from the stopped load test", *r.Metrics.Current.ResponseTimeP95, 3321.5)
			eq(t, "error rate from the stopped load test", *r.Metrics.Current.ErrorRate, 0.03)
			eq(t, "summary.critical_issues", r.Summary.CriticalIssues, 1)
			eq(t, "violation issue", r.Issues[1], Issue{Severity: "CRITICAL", Type: "THRESHOLD", Metric: MetricP95, Value: ptr(3500.0), Threshold: ptr(2100.0),
				Message: "api_response_time_p95 = 3500ms exceeded its threshold 2100ms (source prometheus_scrape); auto-rollback rule met", Time: "2025-09-22T14:33:00.000Z"})
			eq(t, "recommendations", r.Recommendations, []Recommendation{{Type: "PERFORMANCE", Priority: "MEDIUM", Description: descPerformance}, {Type: "RELIABILITY", Priority: "HIGH", Description: descReliability}})
		}},
		{"preflight_failed", preflightFailedRun, func(t *testing.T, r *Report) {
			eq(t, "deployment.status", r.Deployment.Status, "FAILED")
			eq(t, "issues", r.Issues, []Issue{{Severity: "CRITICAL", Type: "PREFLIGHT",
				Message: "pre-flight check orders db (postgres) failed: connection refused (got 12 ms)", Time: "2025-09-22T14:30:04.500Z"}})
			eq(t, "rollback.executed", r.Rollback.Executed, false)
		}},
		{"invalid", invalidRun, func(t *testing.T, r *Report) {
			eq(t, "deployment.status", r.Deployment.Status, "INVALID")
			eq(t, "change.id", r.Change.ID, "CR-2025-001")
			eq(t, "issues", len(r.Issues), 3)
			eq(t, "first issue", r.Issues[0].Message, `deploy.steps[2].timeout (line 12:16): not a duration; write e.g. 5m (got "soon")`)
			eq(t, "warning", r.Issues[2].Severity, SeverityWarning)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			res := generate(t, c.run())
			var r Report
			if err := json.Unmarshal(res.JSON, &r); err != nil {
				t.Fatalf("report JSON does not read back: %v", err)
			}
			c.check(t, &r)
			golden := filepath.Join("testdata", c.name+".json")
			if *update {
				if err := os.WriteFile(golden, append(res.JSON, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("golden file (run with -update to create): %v", err)
			}
			if !bytes.Equal(append(res.JSON, '\n'), want) {
				t.Errorf("report differs from %s:\n%s", golden, res.JSON)
			}
		})
	}
}

// TestKeyOrder checks that the JSON keys follow the seed's generateReport().
func TestKeyOrder(t *testing.T) {
	t.Parallel()
	res := generate(t, successRun())
	s := string(res.JSON)
	order := []string{`"deployment"`, `"id"`, `"startTime"`, `"endTime"`, `"duration"`, `"status"`, `"operator"`, `"change"`,
		`"summary"`, `"overall_status"`, `"critical_issues"`, `"performance_status"`, `"test_results"`,
		`"metrics"`, `"pre_deployment"`, `"post_deployment"`, `"comparison"`,
		`"tests"`, `"smoke_tests"`, `"regression_tests"`, `"performance_tests"`,
		`"issues"`, `"rollback"`, `"executed"`, `"reason"`, `"recommendations"`}
	at := 0
	for _, k := range order {
		i := strings.Index(s[at:], k)
		if i < 0 {
			t.Fatalf("key %s missing or out of order", k)
		}
		at += i
	}
	if !strings.HasPrefix(s, "{\n  \"deployment\": {\n    \"id\"") {
		t.Errorf("not indented with two spaces:\n%.60s", s)
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	for _, run := range []func() *history{successRun, rolledBackRun, preflightFailedRun, invalidRun} {
		h := run()
		a := generate(t, h)
		b := generate(t, run())
		// A redelivered event (same id) anywhere changes nothing.
		k := len(h.events) / 2
		dup := append([]*runbookv1.Event{}, h.events[:k]...)
		dup = append(dup, h.events[0])
		dup = append(dup, h.events[k:]...)
		c, err := Generate(runID, dup)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []*Result{b, c} {
			if !bytes.Equal(a.JSON, r.JSON) || a.QCSummary != r.QCSummary {
				t.Errorf("%s: folding the same events twice gave different bytes", a.Status)
			}
		}
	}
}

func TestRecommendationThresholds(t *testing.T) {
	t.Parallel()
	cases := []struct {
		p95, errRate float64
		failed       int
		want         []string
	}{
		{1500, 0.005, 0, nil},
		{1500.01, 0.005, 0, []string{"PERFORMANCE/MEDIUM"}},
		{1500, 0.00501, 0, []string{"RELIABILITY/HIGH"}},
		{1501, 0.006, 2, []string{"PERFORMANCE/MEDIUM", "RELIABILITY/HIGH", "TESTING/HIGH"}},
		{0, 0, 1, []string{"TESTING/HIGH"}},
	}
	for _, c := range cases {
		h := deployed()
		status := "PASS"
		if c.failed > 0 {
			status = "FAIL"
		}
		tests := []*runbookv1.TestCase{{Name: "a", Status: status}, {Name: "b", Status: "PASS"}}
		if c.failed > 1 {
			tests[1].Status = "FAIL"
		}
		h.at(2*time.Minute, "test.smoke.passed", &runbookv1.Event_TestSmokePassed{TestSmokePassed: &runbookv1.TestSuiteResult{Tests: tests}})
		h.at(3*time.Minute, "monitor.completed", &runbookv1.Event_MonitorCompleted{MonitorCompleted: &runbookv1.MonitorCompleted{
			Stats: map[string]*runbookv1.MetricStats{MetricP95: {P95: c.p95, Samples: 1}, MetricErrorRate: {Mean: c.errRate, Samples: 1}}}})
		res := generate(t, h)
		var got []string
		for _, r := range res.Report.Recommendations {
			got = append(got, r.Type+"/"+r.Priority)
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("p95 %v, error rate %v, %d failed: got %v, want %v", c.p95, c.errRate, c.failed, got, c.want)
		}
		if c.failed > 0 {
			want := descTesting(c.failed)
			if res.Report.Recommendations[len(res.Report.Recommendations)-1].Description != want {
				t.Errorf("testing description: got %q, want %q", res.Report.Recommendations[len(res.Report.Recommendations)-1].Description, want)
			}
		}
		if len(res.Report.Recommendations) == 0 && res.Report.Recommendations == nil {
			t.Errorf("recommendations must be [] not null")
		}
	}
	if got := descTesting(2); got != "2 tests failed. Fix them before the next deployment." {
		t.Errorf("descTesting(2) = %q", got)
	}
}

func TestPerformanceStatus(t *testing.T) {
	t.Parallel()
	f := func(v float64) *float64 { return &v }
	seed := limitsOf(plan.Monitor{})
	// The plan's limits, not 1.5 × threshold: a critical bound written in
	// the plan, a factor of 2, auto-rollback off.
	critical := limitsOf(plan.Monitor{Gates: map[string]plan.Gate{MetricP95: {Max: f(2000), Critical: f(2500)}}})
	factor2 := limitsOf(plan.Monitor{AutoRollback: &plan.AutoRollback{Factor: 2}})
	off := limitsOf(plan.Monitor{AutoRollback: &plan.AutoRollback{Metrics: []string{}}})
	cases := []struct {
		p95, er *float64
		limits  map[string]plan.Limit
		load    *runbookv1.LoadResult
		loadOK  bool
		want    string
		why     string
	}{
		{nil, nil, seed, nil, false, Unknown, ""},
		{f(2100), f(0.01), seed, nil, false, PerformancePass, ""},
		{f(2101), f(0.001), seed, nil, false, PerformanceDegraded, "api_response_time_p95 2101ms (threshold 2100ms, rollback above 3150ms)"},
		{f(100), f(0.011), seed, nil, false, PerformanceDegraded, "error_rate 1.1% (threshold 1%, rollback above 1.5%)"},
		{f(3150), nil, seed, nil, false, PerformanceDegraded, "api_response_time_p95 3150ms (threshold 2100ms, rollback above 3150ms)"},
		{f(3151), nil, seed, nil, false, PerformanceFail, "api_response_time_p95 3151ms (threshold 2100ms, rollback above 3150ms)"},
		{nil, f(0.0151), seed, nil, false, PerformanceFail, "error_rate 1.51% (threshold 1%, rollback above 1.5%)"},
		{f(100), f(0), seed, &runbookv1.LoadResult{}, false, PerformanceFail, "the load test failed its gates"},
		{f(100), f(0), seed, &runbookv1.LoadResult{}, true, PerformancePass, ""},
		{f(2600), f(0.012), critical, nil, false, PerformanceFail,
			"api_response_time_p95 2600ms (threshold 2000ms, rollback above 2500ms); error_rate 1.2% (threshold 1%, rollback above 1.5%)"},
		{f(2400), nil, critical, nil, false, PerformanceDegraded, "api_response_time_p95 2400ms (threshold 2000ms, rollback above 2500ms)"},
		{f(4000), nil, factor2, nil, false, PerformanceDegraded, "api_response_time_p95 4000ms (threshold 2100ms, rollback above 4200ms)"},
		{f(9000), f(1), off, nil, false, PerformanceDegraded,
			"api_response_time_p95 9000ms (threshold 2100ms, no rollback); error_rate 100% (threshold 1%, no rollback)"},
	}
	for i, c := range cases {
		if got, why := performanceStatus(c.p95, c.er, c.limits, c.load, c.loadOK); got != c.want || why != c.why {
			t.Errorf("case %d: got %s %q, want %s %q", i, got, why, c.want, c.why)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                      "0.000s",
		-time.Minute:           "0.000s",
		999 * time.Millisecond: "0.999s",
		200*time.Millisecond + 999*time.Microsecond: "0.200s",
		42 * time.Second:                      "42.000s",
		5 * time.Minute:                       "5m 0.000s",
		90*time.Second + 999*time.Millisecond: "1m 30.999s",
		time.Hour + 2*time.Minute + 3*time.Second + 4*time.Millisecond: "1h 2m 3.004s",
		2 * time.Hour:                "2h 0m 0.000s",
		26*time.Hour + 5*time.Second: "26h 0m 5.000s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// A run in progress gives a preview; a reason with newlines never breaks the
// summary's line count.
func TestPreviewAndOneLine(t *testing.T) {
	t.Parallel()
	h := deployed()
	res := generate(t, h)
	if res.Final || res.Report.Deployment.EndTime != nil || res.Report.Deployment.Duration != "In Progress" {
		t.Errorf("preview: final=%v end=%v duration=%q", res.Final, res.Report.Deployment.EndTime, res.Report.Deployment.Duration)
	}
	if !strings.Contains(res.QCSummary, "Status: VERIFYING (Duration: In Progress)") || !strings.HasSuffix(res.QCSummary, "Overall: IN PROGRESS - VERIFYING") {
		t.Errorf("preview summary:\n%s", res.QCSummary)
	}
	if !strings.HasPrefix(res.QCSummary, "KIS_CORE_V3 Deployment Report - 2025-09-22T14:31:01.000Z\n") {
		t.Errorf("preview header should carry the last event's time:\n%s", res.QCSummary)
	}

	h2 := &history{}
	requested(h2)
	h2.at(time.Second, "preflight.failed", &runbookv1.Event_PreflightFailed{PreflightFailed: &runbookv1.PreflightResult{Reason: "line one\nline two\r\n\tthree"}})
	res = generate(t, h2)
	if n := len(strings.Split(res.QCSummary, "\n")); n != QCLines {
		t.Errorf("summary has %d lines:\n%s", n, res.QCSummary)
	}
	if !strings.HasSuffix(res.QCSummary, "Overall: FAIL - pre-flight failed: line one line two three") {
		t.Errorf("overall line:\n%s", res.QCSummary)
	}
}

func TestPhases(t *testing.T) {
	t.Parallel()
	res := generate(t, rolledBackRun())
	got := map[string]time.Duration{}
	var names []string
	for _, p := range res.Phases {
		got[p.Name] = p.Duration
		names = append(names, p.Name)
	}
	eq(t, "phases", strings.Join(names, ","), "preflight,deploy,verify,rollback,total")
	eq(t, "preflight", got["preflight"], 4*time.Second)
	eq(t, "deploy", got["deploy"], 51*time.Second)
	eq(t, "verify", got["verify"], 4*time.Minute+32*time.Second-61*time.Second)
	eq(t, "rollback", got["rollback"], 90*time.Second)
	eq(t, "total", got["total"], 4*time.Minute+32*time.Second)
}

func eq[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

// A deploy step that never succeeded explains deploy.failed: one critical
// issue, not two. deploy.failed alone is its own issue.
func TestDeployFailureIssues(t *testing.T) {
	t.Parallel()
	base := func(withStep bool) *history {
		h := &history{}
		requested(h)
		h.at(time.Second, "preflight.passed", &runbookv1.Event_PreflightPassed{PreflightPassed: &runbookv1.PreflightResult{}})
		h.at(2*time.Second, "deploy.started", &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}})
		if withStep {
			h.at(3*time.Second, "deploy.step.failed", &runbookv1.Event_DeployStepFailed{DeployStepFailed: &runbookv1.StepEvent{Index: 0, Name: "migrate", Attempt: 2, List: "steps", Error: "exit 1"}})
		}
		h.at(4*time.Second, "deploy.failed", &runbookv1.Event_DeployFailed{DeployFailed: &runbookv1.DeployFinished{FailedStep: "migrate", Error: "exit 1"}})
		h.at(5*time.Second, "rollback.requested", &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{Reason: "deploy failed", RequestedBy: "deployer"}})
		h.at(6*time.Second, "rollback.started", &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{RequestedBy: "deployer"}})
		h.at(9*time.Second, "rollback.done", &runbookv1.Event_RollbackDone{RollbackDone: &runbookv1.DeployFinished{}})
		return h
	}
	res := generate(t, base(true))
	eq(t, "issues with the step", res.Report.Issues, []Issue{{Severity: "CRITICAL", Type: "DEPLOY", Message: "deploy step migrate failed (attempt 2): exit 1", Time: "2025-09-22T14:30:03.000Z"}})
	eq(t, "rollback reason falls back to the request", *res.Report.Rollback.Reason, "deploy failed")
	eq(t, "overall", res.Report.Summary.OverallStatus, "FAIL - rolled back: deploy failed")
	res = generate(t, base(false))
	eq(t, "issues without the step", res.Report.Issues, []Issue{{Severity: "CRITICAL", Type: "DEPLOY", Message: "deploy failed at step migrate: exit 1", Time: "2025-09-22T14:30:04.000Z"}})
}

// Failed smoke tests are critical issues and a TESTING recommendation; a
// test reported again (same type and name) replaces the earlier result.
func TestFailedTests(t *testing.T) {
	t.Parallel()
	h := deployed()
	h.at(2*time.Minute, "test.smoke.failed", &runbookv1.Event_TestSmokeFailed{TestSmokeFailed: &runbookv1.TestSuiteResult{Tests: []*runbookv1.TestCase{
		{Name: "health endpoint", Status: "FAIL", Error: "HTTP 500"}, {Name: "create order", Status: "PASS"}}}})
	h.at(2*time.Minute+time.Second, "test.smoke.failed", &runbookv1.Event_TestSmokeFailed{TestSmokeFailed: &runbookv1.TestSuiteResult{Tests: []*runbookv1.TestCase{
		{Name: "health endpoint", Status: "FAIL", Error: "HTTP 502"}}}})
	h.at(2*time.Minute+2*time.Second, "test.failed", &runbookv1.Event_TestFailed{TestFailed: &runbookv1.TestOutcome{Failed: 1, Reason: "1 smoke test failed", RollbackRequested: true}})
	res := generate(t, h)
	eq(t, "test results", res.Report.Summary.TestResults, TestResults{Passed: 1, Failed: 1, Total: 2})
	eq(t, "api health", res.Report.Metrics.Current.APIHealth, Unhealthy)
	eq(t, "issues", len(res.Report.Issues), 2) // the flaky health step and the test
	eq(t, "test issue", res.Report.Issues[1].Message, "smoke test health endpoint failed: HTTP 502")
	// Nothing but the smoke tests measured the release: 1 of 2 failed.
	eq(t, "error rate from the smoke tests", *res.Report.Metrics.Current.ErrorRate, 0.5)
	eq(t, "recommendations", res.Report.Recommendations, []Recommendation{{Type: "RELIABILITY", Priority: "HIGH", Description: descReliability}, {Type: "TESTING", Priority: "HIGH", Description: "1 test failed. Fix it before the next deployment."}})
	if !strings.Contains(res.QCSummary, "\nSmoke Tests: 1/2 passed\n") {
		t.Errorf("summary:\n%s", res.QCSummary)
	}
}

// Numbers JSON cannot carry (NaN, ±Inf, overflowing differences) never make
// a report fail.
func TestNonFiniteNumbers(t *testing.T) {
	t.Parallel()
	h := deployed()
	h.at(2*time.Minute, "threshold.violated", &runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{Metric: "cpu_utilization", Value: math.NaN(), Threshold: math.Inf(1)}})
	h.at(3*time.Minute, "test.load.failed", &runbookv1.Event_TestLoadFailed{TestLoadFailed: &runbookv1.LoadResult{P95Ms: math.Inf(1), ErrorRate: math.NaN()}})
	h.at(4*time.Minute, "monitor.completed", &runbookv1.Event_MonitorCompleted{MonitorCompleted: &runbookv1.MonitorCompleted{
		Last: map[string]float64{MetricP95: math.MaxFloat64, MetricErrorRate: math.NaN()},
		Max:  map[string]float64{"cpu_utilization": math.Inf(-1)}}})
	h.events[4].GetMonitorStarted().Baseline = append(h.events[4].GetMonitorStarted().Baseline, &runbookv1.MetricSample{Metric: MetricP95, Value: -math.MaxFloat64})
	res := generate(t, h)
	if !json.Valid(res.JSON) || len(strings.Split(res.QCSummary, "\n")) != QCLines {
		t.Fatalf("report:\n%s\n%s", res.JSON, res.QCSummary)
	}
	if _, ok := res.Report.Metrics.Comparison[MetricP95]; ok {
		t.Errorf("an overflowing comparison should be left out")
	}
}

// A rejected run: the report lists every approval decision, and says who
// rejected it and why.
func TestRejectedRunReportsApprovals(t *testing.T) {
	t.Parallel()
	h := &history{}
	requested(h)
	h.at(time.Second, "preflight.passed", &runbookv1.Event_PreflightPassed{PreflightPassed: &runbookv1.PreflightResult{}})
	h.at(2*time.Second, "approval.granted", &runbookv1.Event_ApprovalGranted{ApprovalGranted: &runbookv1.Approval{
		Role: "technical_approval", Approver: "Lead Architect", PlanSha256: "abc"}}, "Lead Architect")
	h.at(3*time.Second, "approval.refused", &runbookv1.Event_ApprovalRefused{ApprovalRefused: &runbookv1.Approval{
		Role: "business_approval", Approver: "Kim Operator", Reason: "the requester cannot approve their own change"}})
	h.at(4*time.Second, "approval.rejected", &runbookv1.Event_ApprovalRejected{ApprovalRejected: &runbookv1.Approval{
		Role: "security_approval", Approver: "Security Officer", Reason: "no pen-test report"}}, "Security Officer")
	res := generate(t, h)
	if res.Status != "REJECTED" {
		t.Fatalf("status %s", res.Status)
	}
	got := []string{}
	for _, a := range res.Report.Approvals {
		got = append(got, a.Decision+":"+a.Role+":"+a.Approver)
	}
	want := "GRANTED:technical_approval:Lead Architect REFUSED:business_approval:Kim Operator REJECTED:security_approval:Security Officer"
	if strings.Join(got, " ") != want {
		t.Fatalf("approvals %v, want %s", got, want)
	}
	last := strings.Split(res.QCSummary, "\n")
	if o := last[len(last)-1]; !strings.Contains(o, "Security Officer") || !strings.Contains(o, "no pen-test report") {
		t.Fatalf("Overall line does not say who rejected and why: %q", o)
	}
}
