// Package report folds the events of one run into the seed's deployment
// report: the JSON of DeploymentReportGenerator.generateReport() and the
// text of generate12LineQCSummary() (seed 09_Runbook.md, section 5.1).
//
// It is pure: no NATS, no database, no clock. The same events give the same
// bytes, so replaying the audit stream reproduces every report exactly. A
// report covers a run up to and including the event that made it final
// (domain/runstate); events after it (a monitor.completed that lands after
// rollback.done) never change it, so the report does not depend on when it
// is built.
package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kis-core/runbook/domain/runstate"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Report is generateReport()'s object. Field order follows the seed; the
// change object and the fields marked "addition" are not in the seed.
type Report struct {
	Deployment Deployment `json:"deployment"`
	Change     Change     `json:"change"`    // addition
	Approvals  []Approval `json:"approvals"` // addition: every decision, in stream order
	Summary    Summary    `json:"summary"`
	Metrics    Metrics    `json:"metrics"`
	// Monitoring is how much of the watch window was watched (addition);
	// absent when monitor.completed does not say (no window opened, or an
	// event older than window_ms).
	Monitoring *Monitoring `json:"monitoring,omitempty"`
	Tests      Tests       `json:"tests"`
	Issues     []Issue     `json:"issues"`
	Rollback   Rollback    `json:"rollback"`
	// OperatorTodo is what the operator must do by hand (addition): the
	// described steps of the plan, which runbook shows and never runs.
	// Never null: [] when empty.
	OperatorTodo    []TodoItem       `json:"operator_todo"`
	Recommendations []Recommendation `json:"recommendations"`
	// Steps are the deploy and rollback steps at their latest attempt
	// (addition), manual ones MANUAL. Never null: [] when none ran.
	Steps []Step `json:"steps"`
	// Reverts is the run a revert run undoes (addition; `runbook revert`):
	// its plan's reverts section.
	Reverts *RunLink `json:"reverts,omitempty"`
	// RevertedBy are the runs that revert this one (addition), from its
	// revert.requested events. Those come after the run ended SUCCESS,
	// so the published report (report.ready) never holds them: readers
	// add them (Link), as `runbook report` and the read API do.
	RevertedBy []RunLink `json:"reverted_by,omitempty"`
}

// RunLink names another run a report links to (addition): the run a
// revert reverts, or a run that reverts this one.
type RunLink struct {
	Run         string `json:"run"`
	ChangeID    string `json:"change_id,omitempty"`
	Reason      string `json:"reason,omitempty"`
	RequestedBy string `json:"requested_by,omitempty"`
}

// TodoItem is one thing left to the operator (addition): a described
// (manual) step a rollback reached, or, when a failure undid nothing
// (no executable rollback step), each of the plan's described rollback
// steps.
type TodoItem struct {
	Step  string `json:"step"`
	Phase string `json:"phase"` // rollback (deploy)
	Note  string `json:"note"`  // NoteManualStep, NoteNothingUndone
	Time  string `json:"time"`  // of the event that left it to the operator
}

// Deployment is the report's deployment object.
type Deployment struct {
	ID        string  `json:"id"`        // the run id
	StartTime string  `json:"startTime"` // change.requested, like JS toISOString()
	EndTime   *string `json:"endTime"`   // the event that made the run final; null while in progress
	Duration  string  `json:"duration"`  // formatDuration(end-start), "In Progress" while in progress
	Status    string  `json:"status"`    // the runstate status
	Operator  string  `json:"operator"`  // actor of change.requested, else "system"
}

// Change is the change request the run carried out (addition).
type Change struct {
	ID        string `json:"id"`
	Title     string `json:"title"`
	Requester string `json:"requester"`
	Type      string `json:"type"`
	Priority  string `json:"priority"`
	// Systems are the plan's scope.systems_affected: the QC summary's
	// header names them.
	Systems []string `json:"systems,omitempty"`
}

// Approval is one approval decision of the run (addition): granted,
// rejected, or refused (separation of duties, wrong plan, wrong role).
type Approval struct {
	Decision   string `json:"decision"` // GRANTED, REJECTED, REFUSED
	Role       string `json:"role"`
	Approver   string `json:"approver"`
	Comment    string `json:"comment,omitempty"`
	Reason     string `json:"reason,omitempty"`
	PlanSHA256 string `json:"plan_sha256,omitempty"`
	Time       string `json:"time"`
}

// Summary is the report's summary object.
type Summary struct {
	OverallStatus     string      `json:"overall_status"`
	CriticalIssues    int         `json:"critical_issues"`
	PerformanceStatus string      `json:"performance_status"`
	PerformanceReason string      `json:"performance_reason,omitempty"` // addition: unless PASS, each value past a limit, citing the limit the monitor enforced
	TestResults       TestResults `json:"test_results"`
}

// TestResults is getTestSummary(): every test of the report, by outcome.
type TestResults struct {
	Passed int `json:"passed"`
	Failed int `json:"failed"`
	Total  int `json:"total"`
}

// Metrics is the report's metrics object.
type Metrics struct {
	// PreDeployment is the monitor's baseline (monitor.started), by metric.
	PreDeployment map[string]float64 `json:"pre_deployment"`
	// PostDeployment is the last value the monitor saw (monitor.completed).
	PostDeployment map[string]float64 `json:"post_deployment"`
	// Comparison has every metric found in both.
	Comparison map[string]Comparison `json:"comparison"`
	// Current is what the QC summary prints (the seed's this.metrics) (addition).
	Current Current `json:"current"`
}

// Monitoring is what monitor.completed says of the watch window: its
// length, the part of it judged, and the ticks missed while the monitor
// was down and how late that made the window (the window is extended by
// it, or was not watched: the monitor asked for a rollback).
type Monitoring struct {
	WindowMS    int64 `json:"window_ms"`
	ObservedMS  int64 `json:"observed_ms"`
	MissedTicks int   `json:"missed_ticks"`
	DownMS      int64 `json:"down_ms"`
	// Observed is the sentence: "observed 8 s of 8 s" (vocab.Observed).
	Observed string `json:"observed"`
	// Reason is monitor.completed's reason.
	Reason string `json:"reason"`
}

// Comparison of one metric before and after the deploy.
type Comparison struct {
	Pre    float64 `json:"pre"`
	Post   float64 `json:"post"`
	Change float64 `json:"change"` // post - pre
	// ChangePercent is change / pre × 100, rounded to 2 decimals; null when pre is 0.
	ChangePercent *float64 `json:"change_percent"`
}

// Current holds the values behind the QC summary's health and metric lines
// (addition). A null number is printed "Unknown": nothing measured it.
// The metrics' sources: SourceMonitor (the watch window's judged samples:
// the p95 of the p95 samples, the mean error rate), SourceLoadTest (the
// load test's result), SourceSmoke (the smoke tests: the p95 of their
// latencies, the share that failed). Database and Cache: the pre-flight
// postgres and redis checks, NotChecked when the plan has none.
type Current struct {
	APIHealth             string   `json:"api_health"`
	DBHealth              string   `json:"db_health"`
	CacheHealth           string   `json:"cache_health"`
	ErrorRate             *float64 `json:"error_rate"`
	ErrorRateSource       string   `json:"error_rate_source,omitempty"`
	ResponseTimeP95       *float64 `json:"response_time_p95"`
	ResponseTimeP95Source string   `json:"response_time_p95_source,omitempty"`
}

// Tests is the report's tests object, by type. Never null: [] when empty.
type Tests struct {
	SmokeTests       []TestCase `json:"smoke_tests"`
	RegressionTests  []TestCase `json:"regression_tests"`
	PerformanceTests []TestCase `json:"performance_tests"`
}

// TestCase is one test of the report.
type TestCase struct {
	Name       string `json:"name"`
	Type       string `json:"type"`   // smoke, regression, performance
	Status     string `json:"status"` // PASS, FAIL, SKIP, STOPPED
	DurationMS int64  `json:"duration_ms"`
	Details    string `json:"details,omitempty"`
	Error      string `json:"error,omitempty"`
}

// TestStopped is the status of a load test the run's rollback stopped
// before it finished: it shows what it measured, its gates not judged; it
// counts neither as passed nor as failed.
const TestStopped = "STOPPED"

// Severities of issues. The QC summary's "Critical Issues" counts CRITICAL.
const (
	SeverityCritical = "CRITICAL"
	SeverityWarning  = "WARNING"
)

// Issue is one entry of the report's issues.
type Issue struct {
	Severity  string   `json:"severity"`
	Type      string   `json:"type"` // THRESHOLD, PLAN, PREFLIGHT, DEPLOY, ROLLBACK, TEST, APPROVAL, DEAD_LETTER, MONITOR (addition)
	Metric    string   `json:"metric,omitempty"`
	Value     *float64 `json:"value,omitempty"`
	Threshold *float64 `json:"threshold,omitempty"`
	Message   string   `json:"message"`
	Time      string   `json:"time"` // of the event that reported it (addition)
}

// Rollback is the report's rollback object.
type Rollback struct {
	Executed    bool    `json:"executed"`     // status ROLLED_BACK or ROLLBACK_FAILED
	Reason      *string `json:"reason"`       // rollback.started's reason (else the request's), null when none started
	Duration    *string `json:"duration"`     // rollback.started → rollback.done/failed, null otherwise
	RequestedBy *string `json:"requested_by"` // monitor, tester, deployer, operator (addition)
	// NothingUndone: the run failed and nothing was undone (addition): a
	// rollback was asked for (reason, requested_by) and the plan has no
	// executable rollback step (run.failed); see operator_todo.
	NothingUndone bool `json:"nothing_undone,omitempty"`
	// Verification is rollback_plan.verify: the smoke suites the tester
	// re-ran once the rollback's steps were done (addition); absent when
	// the rollback named none.
	Verification *RollbackVerification `json:"verification,omitempty"`
}

// Statuses of a rollback's verification.
const (
	VerifyPass    = "PASS"    // rollback.verified: every test passed
	VerifyFail    = "FAIL"    // rollback.verify.failed
	VerifyPending = "PENDING" // the steps are running, or done and the tester has not reported
	VerifyNotRun  = "NOT_RUN" // the rollback's steps failed: nothing was re-run
)

// RollbackVerification is the result of rollback_plan.verify (addition).
type RollbackVerification struct {
	Suites []string   `json:"suites"` // as rollback.started named them, in the order they ran
	Status string     `json:"status"` // PASS, FAIL, PENDING, NOT_RUN
	Passed int        `json:"passed"`
	Failed int        `json:"failed"`
	Tests  []TestCase `json:"tests"` // never null
}

// Recommendation is one entry of generateRecommendations().
type Recommendation struct {
	Type        string `json:"type"`
	Priority    string `json:"priority"`
	Description string `json:"description"`
}

// Phase is how long one phase of the run took.
type Phase struct {
	Name     string // preflight, deploy, verify, rollback, total
	Duration time.Duration
}

// Result is everything Generate makes of one run.
type Result struct {
	RunID  string
	Status runstate.Status
	// Final reports whether the run reached a final status; a report of a
	// run in progress is a preview.
	Final bool
	// FinalEvent is the event that made the run final (nil while in progress).
	FinalEvent *runbookv1.Event
	// State is the run's fold (runstate) over the events the report covers.
	State *runstate.State
	// TestsPending: the run ended while its tests ran (a rollback another
	// service began) and the tester's outcome is not among the events
	// yet. It usually follows within milliseconds (the tester stops at
	// rollback.started and publishes what it measured); a reporter waits
	// a little for it before it reports.
	TestsPending bool
	// MonitorPending: the run ended while its watch window was open (a
	// rollback the monitor itself asked for, just before its
	// monitor.completed, or another's) and monitor.completed — how much of
	// the window was observed — is not among the events yet. A reporter
	// waits a little for it too.
	MonitorPending bool
	Report         Report
	// JSON is the report, indented with two spaces, keys in the seed's order.
	JSON []byte
	// QCSummary is generate12LineQCSummary()'s text, without a final newline.
	QCSummary string
	// Phases are the durations of the phases the run went through, in the
	// order preflight, deploy, verify, rollback, total.
	Phases []Phase
	// Checks are the results of the run's latest pre-flight (nil: none):
	// what the report's Database and Cache health and its pre-flight
	// issues come from, for the dashboard to list.
	Checks []*runbookv1.CheckResult
	// Load is the load test's result (nil: none ran) and LoadTest its
	// entry among the report's performance tests (status PASS, FAIL or
	// STOPPED; details in each metric's unit).
	Load     *runbookv1.LoadResult
	LoadTest *TestCase
}

// Generate folds the events of run runID, in stream order, into its report.
// Events of other runs, and repeated event ids, are ignored. The report
// covers the events up to the one that made the run final, and after it
// the tester's events until its outcome if the run ended while the tests
// ran, and the monitor's monitor.completed if it ended while its window
// was open — never anything at or after a report.ready, so the report of a
// run re-derived from the stream is the one published.
func Generate(runID string, events []*runbookv1.Event) (*Result, error) {
	f := newFold(runID)
	for _, ev := range events {
		if ev.GetReportReady() != nil && ev.GetRunId() == runID {
			break
		}
		if f.done && !f.lateTestEvent(ev) && !f.lateMonitorEvent(ev) {
			continue
		}
		f.apply(ev)
	}
	res := f.result()
	data, err := encodeJSON(&res.Report)
	if err != nil {
		return nil, fmt.Errorf("report of run %s: %w", runID, err)
	}
	res.JSON = data
	return res, nil
}

// encodeJSON is json.MarshalIndent with two spaces, without HTML escaping
// (a message "p95 > 2100" stays readable) and without a final newline.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode report: %w", err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
