package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/domain/vocab"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Metric names the report reads from the monitor (the seed's monitoringMetrics).
const (
	MetricP95       = "api_response_time_p95"
	MetricErrorRate = "error_rate"
)

// Where a QC metric came from: the judged samples of the watch window
// (monitor.completed's stats: the mean error rate, the p95 of the p95
// samples), else — the window cut short before it judged one — the load
// test's result, else the smoke tests (the p95 of their latencies, the
// share of them that failed).
const (
	SourceMonitor  = "monitor.completed"
	SourceLoadTest = "test.load"
	SourceSmoke    = "test.smoke"
)

// Health words of the QC summary.
const (
	Unknown          = "Unknown"
	Healthy          = "HEALTHY"
	Unhealthy        = "UNHEALTHY"
	Connected        = "CONNECTED"
	ConnectionFailed = "CONNECTION FAILED"
	// NotChecked: the plan has no check of that kind (Database, Cache).
	NotChecked = "not checked"
)

// Notes of the operator's to-do.
const (
	NoteManualStep    = plan.ManualNotExecuted + ": a described step of the plan; runbook showed it and ran nothing"
	NoteNothingUndone = plan.ManualNotExecuted + ": " + plan.NothingUndone
)

// loadTestKey is the key of the load test among the tests: one entry per run,
// replaced when the tester reports it again.
const loadTestKey = "performance\x00\x00load"

type stepKey struct {
	phase string // deploy, rollback
	list  string
	index int32
}

// draft is an issue and where in the run it happened; a step failure's
// severity is only known once the fold has seen whether a retry succeeded.
type draft struct {
	pos   int
	issue Issue
	step  *stepKey // step failure: WARNING when the step later succeeded
	// runFailure is deploy.failed / rollback.failed: kept only when no step
	// failure of that phase already explains it.
	runFailure string
}

type testEntry struct {
	tc   TestCase
	pos  int
	time time.Time
}

// fold builds the report's detail; the run's status and the facts it
// decides by — the change request, the deploy, the rollback asked for,
// started and ended, its verification, run.failed, the tests started and
// ended — are the run's runstate fold (state), folded in the same loop.
type fold struct {
	runID string
	seen  map[string]bool
	state *runstate.State
	pos   int
	done  bool // the run is final: later events are not part of the report

	start      time.Time
	haveStart  bool
	end        time.Time
	last       time.Time
	finalEvent *runbookv1.Event

	preflightStart, preflightEnd time.Time
	checks                       []*runbookv1.CheckResult
	rollbackStartPos             int // where rollback.started is among the issues

	baseline map[string]float64
	post     map[string]float64
	// stats are monitor.completed's, by metric: over the judged samples.
	stats map[string]*runbookv1.MetricStats
	// monitoring is monitor.completed's account of the window watched.
	monitoring *Monitoring
	// todo is what the operator must do by hand: described steps the
	// deployer reached (manual step events), in stream order.
	todo []TodoItem

	tests       []*testEntry
	testIndex   map[string]int
	load        *runbookv1.LoadResult
	loadOK      bool
	testFail    string // test.failed's reason
	testFailT   time.Time
	testFailP   int
	loadStopped bool // the load test was stopped by the rollback: gates not judged

	rejectedErrors int
	approvals      []Approval

	drafts      []*draft
	lastSuccess map[stepKey]int  // position of the step's latest success
	stepOK      map[stepKey]bool // outcome of the step's latest attempt
	healthSteps map[stepKey]bool // the deploy's health steps
	// steps are the deploy and rollback steps at their latest attempt
	// (steps.go), stepRow their position by step.
	steps   []Step
	stepRow map[stepKey]int
}

func newFold(runID string) *fold {
	return &fold{
		runID:       runID,
		seen:        map[string]bool{},
		state:       runstate.New(runID),
		baseline:    map[string]float64{},
		post:        map[string]float64{},
		stats:       map[string]*runbookv1.MetricStats{},
		testIndex:   map[string]int{},
		lastSuccess: map[stepKey]int{},
		stepOK:      map[stepKey]bool{},
		healthSteps: map[stepKey]bool{},
	}
}

func (f *fold) approval(decision string, a *runbookv1.Approval, t time.Time) {
	f.approvals = append(f.approvals, Approval{Decision: decision, Role: a.GetRole(), Approver: a.GetApprover(),
		Comment: a.GetComment(), Reason: a.GetReason(), PlanSHA256: a.GetPlanSha256(), Time: isoTime(t)})
}

func evTime(ev *runbookv1.Event) time.Time {
	if ev.GetTime() == nil {
		return time.Time{}
	}
	return ev.GetTime().AsTime()
}

func (f *fold) apply(ev *runbookv1.Event) {
	if ev.GetRunId() != f.runID || f.seen[ev.GetId()] {
		return
	}
	f.seen[ev.GetId()] = true
	f.pos++
	t := evTime(ev)
	f.last = t
	if !f.haveStart {
		f.start, f.haveStart = t, true
	}
	wasFinal := f.state.Status.Final()
	f.state.Apply(ev)
	if !wasFinal && f.state.Status.Final() {
		f.end = t
		f.finalEvent = ev
		f.done = true
	}

	f.recordStep(ev, t)
	switch p := ev.Payload.(type) {
	case *runbookv1.Event_ChangeRequested:
		f.start = t
	case *runbookv1.Event_ChangeRejected:
		for _, e := range p.ChangeRejected.GetErrors() {
			f.rejectedErrors++
			f.add(&draft{issue: Issue{Severity: SeverityCritical, Type: "PLAN", Message: planErrorMessage(e)}}, t)
		}
		for _, w := range p.ChangeRejected.GetWarnings() {
			f.add(&draft{issue: Issue{Severity: SeverityWarning, Type: "PLAN", Message: planErrorMessage(w)}}, t)
		}
	case *runbookv1.Event_PreflightStarted:
		f.preflightStart = t
	case *runbookv1.Event_PreflightPassed:
		f.preflightResult(p.PreflightPassed, false, t)
	case *runbookv1.Event_PreflightFailed:
		f.preflightResult(p.PreflightFailed, true, t)
	case *runbookv1.Event_ApprovalGranted:
		f.approval("GRANTED", p.ApprovalGranted, t)
	case *runbookv1.Event_ApprovalRejected:
		f.approval("REJECTED", p.ApprovalRejected, t)
	case *runbookv1.Event_ApprovalRefused:
		a := p.ApprovalRefused
		f.approval("REFUSED", a, t)
		f.add(&draft{issue: Issue{Severity: SeverityWarning, Type: "APPROVAL",
			Message: fmt.Sprintf("approval refused for %s as %s: %s", a.GetApprover(), a.GetRole(), a.GetReason())}}, t)
	case *runbookv1.Event_DeployStepSucceeded:
		f.stepSucceeded("deploy", p.DeployStepSucceeded, t)
	case *runbookv1.Event_DeployStepFailed:
		f.stepFailed("deploy", "DEPLOY", p.DeployStepFailed, t)
	case *runbookv1.Event_DeployFailed:
		d := p.DeployFailed
		msg := "deploy failed"
		if d.GetFailedStep() != "" {
			msg += " at step " + d.GetFailedStep()
		}
		if d.GetError() != "" {
			msg += ": " + d.GetError()
		}
		f.add(&draft{issue: Issue{Severity: SeverityCritical, Type: "DEPLOY", Message: msg}, runFailure: "deploy"}, t)
	case *runbookv1.Event_RollbackStarted:
		if f.state.RollbackStart == ev {
			f.rollbackStartPos = f.pos
		}
	case *runbookv1.Event_RollbackStepSucceeded:
		f.stepSucceeded("rollback", p.RollbackStepSucceeded, t)
	case *runbookv1.Event_RollbackStepFailed:
		f.stepFailed("rollback", "ROLLBACK", p.RollbackStepFailed, t)
	case *runbookv1.Event_RunFailed:
		if f.state.RunFailed == ev {
			f.add(&draft{issue: Issue{Severity: SeverityCritical, Type: "ROLLBACK", Message: p.RunFailed.GetReason()}}, t)
		}
	case *runbookv1.Event_RollbackVerifyFailed:
		f.add(&draft{issue: Issue{Severity: SeverityCritical, Type: "ROLLBACK", Message: verifyFailedMessage(f.state.RollbackVerify, p.RollbackVerifyFailed)}}, t)
	case *runbookv1.Event_RollbackFailed:
		msg := "rollback failed: production is in an unknown state"
		if e := p.RollbackFailed.GetError(); e != "" {
			msg += ": " + e
		}
		f.add(&draft{issue: Issue{Severity: SeverityCritical, Type: "ROLLBACK", Message: msg}, runFailure: "rollback"}, t)
	case *runbookv1.Event_MonitorStarted:
		clear(f.baseline)
		for _, s := range p.MonitorStarted.GetBaseline() {
			if finite(s.GetValue()) && s.GetMetric() != "" {
				f.baseline[s.GetMetric()] = s.GetValue() // several samples of one metric: the last
			}
		}
	case *runbookv1.Event_ThresholdViolated:
		v := p.ThresholdViolated
		sev := strings.ToUpper(strings.TrimSpace(v.GetSeverity()))
		if sev == "" {
			sev = SeverityWarning
		}
		val, th := plan.FormatMetric(v.GetMetric(), v.GetValue()), plan.FormatMetric(v.GetMetric(), v.GetThreshold())
		msg := fmt.Sprintf("%s = %s exceeded its threshold %s", v.GetMetric(), val, th)
		switch {
		case v.GetNoData():
			msg = fmt.Sprintf("%s: no data (the sources stopped reporting it; fail closed)", v.GetMetric())
		case v.GetBelow():
			msg = fmt.Sprintf("%s = %s fell below its threshold %s", v.GetMetric(), val, th)
		}
		if v.GetSource() != "" && !v.GetNoData() {
			msg += " (source " + v.GetSource() + ")"
		}
		if v.GetWindowSize() > 1 {
			msg += fmt.Sprintf("; %d of the last %d samples critical (gate needs %d)", v.GetWindowCritical(), v.GetWindowSize(), v.GetWindowNeeded())
		}
		switch {
		case v.GetShadow():
			msg += "; shadow mode: recorded, not enforced (no rollback)"
		case v.GetAutoRollback():
			msg += "; auto-rollback rule met"
		}
		f.add(&draft{issue: Issue{Severity: sev, Type: "THRESHOLD", Metric: v.GetMetric(),
			Value: fptr(v.GetValue()), Threshold: fptr(v.GetThreshold()), Message: msg}}, t)
	case *runbookv1.Event_MonitorCompleted:
		clear(f.post)
		clear(f.stats)
		for k, v := range p.MonitorCompleted.GetLast() {
			if finite(v) {
				f.post[k] = v
			}
		}
		for k, st := range p.MonitorCompleted.GetStats() {
			if st != nil {
				f.stats[k] = st
			}
		}
		f.monitorWatched(p.MonitorCompleted, t)
	case *runbookv1.Event_TestSmokePassed:
		f.suite(p.TestSmokePassed, t)
	case *runbookv1.Event_TestSmokeFailed:
		f.suite(p.TestSmokeFailed, t)
	case *runbookv1.Event_TestLoadPassed:
		f.loadResult(p.TestLoadPassed, true, t)
	case *runbookv1.Event_TestLoadFailed:
		f.loadResult(p.TestLoadFailed, false, t)
	case *runbookv1.Event_TestFailed:
		if p.TestFailed.GetStopped() != "" {
			f.testsStopped(p.TestFailed, t)
			break
		}
		f.testFail, f.testFailT, f.testFailP = p.TestFailed.GetReason(), t, f.pos
		if f.testFail == "" {
			f.testFail = "tests failed"
		}
	case *runbookv1.Event_EventDeadLettered:
		d := p.EventDeadLettered
		f.add(&draft{issue: Issue{Severity: SeverityWarning, Type: "DEAD_LETTER",
			Message: fmt.Sprintf("%s (stream sequence %d) dead-lettered by consumer %s after %d deliveries: %s",
				d.GetOriginalSubject(), d.GetOriginalSequence(), d.GetConsumer(), d.GetDeliveries(), d.GetReason())}}, t)
	}
}

// monitorWatched keeps how much of its window monitor.completed says was
// watched; a window with ticks missed while the monitor was down is an
// issue: CRITICAL unless the window was made up in full.
func (f *fold) monitorWatched(m *runbookv1.MonitorCompleted, t time.Time) {
	f.monitoring = nil
	f.drafts = slices.DeleteFunc(f.drafts, func(d *draft) bool { return d.issue.Type == "MONITOR" })
	observed := vocab.Observed(m)
	if observed == "" || (m.GetWindowOpened() == nil && m.GetDownMs() == 0) {
		return
	}
	f.monitoring = &Monitoring{WindowMS: m.GetWindowMs(), ObservedMS: m.GetObservedMs(), MissedTicks: int(m.GetMissedTicks()),
		DownMS: m.GetDownMs(), Observed: observed, Reason: m.GetReason()}
	if m.GetMissedTicks() == 0 && m.GetDownMs() == 0 {
		return
	}
	sev := SeverityWarning
	if m.GetObservedMs() < m.GetWindowMs() {
		sev = SeverityCritical
	}
	f.add(&draft{issue: Issue{Severity: sev, Type: "MONITOR", Message: "watch window " + observed}}, t)
}

func (f *fold) add(d *draft, t time.Time) {
	d.pos = f.pos
	d.issue.Time = isoTime(t)
	f.drafts = append(f.drafts, d)
}

func (f *fold) preflightResult(r *runbookv1.PreflightResult, failed bool, t time.Time) {
	f.preflightEnd = t
	f.checks = r.GetChecks()
	// A pre-flight run again replaces the earlier findings.
	f.drafts = slices.DeleteFunc(f.drafts, func(d *draft) bool { return d.issue.Type == "PREFLIGHT" })
	explained := false
	for _, c := range r.GetChecks() {
		var sev, word string
		switch c.GetStatus() {
		case runbookv1.CheckStatus_CHECK_STATUS_FAIL:
			sev, word = SeverityWarning, "failed"
			if c.GetBlocking() {
				sev = SeverityCritical
				explained = true
			}
		case runbookv1.CheckStatus_CHECK_STATUS_WARN:
			sev, word = SeverityWarning, "warned"
		default:
			continue
		}
		msg := fmt.Sprintf("pre-flight check %s (%s) %s", c.GetName(), c.GetKind(), word)
		if c.GetMessage() != "" {
			msg += ": " + c.GetMessage()
		}
		if c.GetValue() != "" {
			msg += " (got " + c.GetValue()
			if c.GetThreshold() != "" {
				msg += ", want " + c.GetThreshold()
			}
			msg += ")"
		}
		f.add(&draft{issue: Issue{Severity: sev, Type: "PREFLIGHT", Message: msg}}, t)
	}
	if failed && !explained {
		reason := r.GetReason()
		if reason == "" {
			reason = "no reason given"
		}
		f.add(&draft{issue: Issue{Severity: SeverityCritical, Type: "PREFLIGHT", Message: "pre-flight failed: " + reason}}, t)
	}
}

func keyOf(phase string, s *runbookv1.StepEvent) stepKey {
	return stepKey{phase: phase, list: s.GetList(), index: s.GetIndex()}
}

func isHealth(s *runbookv1.StepEvent) bool {
	return s.GetList() == "health" || s.GetKind() == "health"
}

func (f *fold) stepSucceeded(phase string, s *runbookv1.StepEvent, t time.Time) {
	k := keyOf(phase, s)
	if s.GetManual() {
		f.todo = append(f.todo, TodoItem{Step: s.GetName(), Phase: phase, Note: NoteManualStep, Time: isoTime(t)})
	}
	f.lastSuccess[k] = f.pos
	f.stepOK[k] = true
	if phase == "deploy" && isHealth(s) {
		f.healthSteps[k] = true
	}
}

func (f *fold) stepFailed(phase, typ string, s *runbookv1.StepEvent, t time.Time) {
	k := keyOf(phase, s)
	f.stepOK[k] = false
	if phase == "deploy" && isHealth(s) {
		f.healthSteps[k] = true
	}
	name := s.GetName()
	if name == "" {
		name = fmt.Sprintf("#%d", s.GetIndex()+1)
	}
	msg := fmt.Sprintf("%s step %s", phase, name)
	if s.GetList() != "" && s.GetList() != "steps" {
		msg = fmt.Sprintf("%s %s step %s", phase, s.GetList(), name)
	}
	msg += fmt.Sprintf(" failed (attempt %d)", max(s.GetAttempt(), 1))
	if s.GetError() != "" {
		msg += ": " + s.GetError()
	}
	f.add(&draft{issue: Issue{Severity: SeverityCritical, Type: typ, Message: msg}, step: &k}, t)
}

func (f *fold) putTest(key string, tc TestCase, t time.Time) {
	e := &testEntry{tc: tc, pos: f.pos, time: t}
	if i, ok := f.testIndex[key]; ok {
		f.tests[i] = e
		return
	}
	f.testIndex[key] = len(f.tests)
	f.tests = append(f.tests, e)
}

func (f *fold) suite(s *runbookv1.TestSuiteResult, t time.Time) {
	for _, c := range s.GetTests() {
		tc := testCase(c)
		f.putTest(tc.Type+"\x00"+tc.Name, tc, t)
	}
}

// testCase is one test of a suite as the report lists it.
func testCase(c *runbookv1.TestCase) TestCase {
	typ := strings.ToLower(strings.TrimSpace(c.GetType()))
	if typ == "" {
		typ = "smoke"
	}
	return TestCase{
		Name:       c.GetName(),
		Type:       typ,
		Status:     strings.ToUpper(strings.TrimSpace(c.GetStatus())),
		DurationMS: c.GetDurationMs(),
		Details:    c.GetDetails(),
		Error:      c.GetError(),
	}
}

// testsStopped folds in the tester's stopped outcome (test.failed with
// stopped set: the run's rollback began while the tests ran): the smoke
// cases and the load test with what they measured before the stop, and one
// WARNING saying so. Not a test failure: the release was not judged by the
// tests that did not finish.
func (f *fold) testsStopped(o *runbookv1.TestOutcome, t time.Time) {
	msg := "tests stopped: " + o.GetStopped()
	if sm := o.GetSmoke(); sm != nil || o.GetSmokeNotRun() > 0 {
		f.suite(sm, t)
		done := len(sm.GetTests())
		msg += fmt.Sprintf("; %d of %d smoke tests completed before the stop", done, done+int(o.GetSmokeNotRun()))
	}
	if l := o.GetLoad(); l != nil {
		f.loadStopped = true
		f.loadResult(l, false, t)
		msg += "; the load test was stopped after " + FormatDuration(time.Duration(l.GetDurationMs())*time.Millisecond) + " (gates not judged)"
	} else if f.state.TestStart.GetTestStarted().GetLoadTest() && f.load == nil {
		msg += "; the load test did not run"
	}
	f.add(&draft{issue: Issue{Severity: SeverityWarning, Type: "TEST", Message: msg}}, t)
}

func (f *fold) loadResult(l *runbookv1.LoadResult, passed bool, t time.Time) {
	f.load, f.loadOK = l, passed
	status, errText := "PASS", ""
	switch {
	case f.loadStopped:
		status = TestStopped
	case !passed:
		status, errText = "FAIL", l.GetReason()
		if errText == "" {
			errText = "load test gates not met"
		}
	}
	details := fmt.Sprintf("p95 %s, error rate %s, %d requests, %d errors, %s req/s",
		plan.FormatMetric(MetricP95, l.GetP95Ms()), plan.FormatMetric(MetricErrorRate, l.GetErrorRate()), l.GetRequests(), l.GetErrors(), num(round(l.GetRps(), 1)))
	if l.GetGateP95Ms() > 0 || l.GetGateErrorRate() > 0 {
		details += fmt.Sprintf(" (gates: p95 ≤ %s, error rate ≤ %s)", plan.FormatMetric(MetricP95, l.GetGateP95Ms()), plan.FormatMetric(MetricErrorRate, l.GetGateErrorRate()))
	}
	if f.loadStopped && l.GetReason() != "" {
		details += "; " + l.GetReason()
	}
	f.putTest(loadTestKey, TestCase{
		Name:       fmt.Sprintf("Load test (%d VUs, %s)", l.GetVus(), FormatDuration(time.Duration(l.GetDurationMs())*time.Millisecond)),
		Type:       "performance",
		Status:     status,
		DurationMS: l.GetDurationMs(),
		Details:    details,
		Error:      errText,
	}, t)
}

// ---- the result ----

func (f *fold) result() *Result {
	st := f.state
	final := st.Status.Final()
	requested := st.Request.GetChangeRequested()
	info := readPlan(requested)
	res := &Result{RunID: f.runID, Status: st.Status, Final: final, FinalEvent: f.finalEvent, TestsPending: f.testsPending(), MonitorPending: f.monitorPending(), State: st}
	r := &res.Report

	operator := st.Request.GetActor()
	if operator == "" {
		operator = "system"
	}
	r.Deployment = Deployment{ID: f.runID, StartTime: isoTime(f.start), Duration: "In Progress", Status: string(st.Status), Operator: operator}
	if final {
		r.Deployment.EndTime = ptr(isoTime(f.end))
		r.Deployment.Duration = FormatDuration(f.end.Sub(f.start))
	}
	r.Change = Change{
		ID:        firstOf(info.id, requested.GetChangeId()),
		Title:     firstOf(info.title, requested.GetTitle()),
		Requester: firstOf(info.requester, requested.GetRequester()),
		Type:      info.typ,
		Priority:  info.priority,
		Systems:   slices.Clone(info.systems),
	}

	if info.reverts != nil { // info is shared (memoised): the report gets its own copy
		rv := *info.reverts
		rv.RequestedBy = operator
		r.Reverts = &rv
	}
	r.Approvals = append([]Approval{}, f.approvals...)
	r.Steps = append([]Step{}, f.steps...)
	res.Checks = f.checks
	res.Load = f.load
	if i, ok := f.testIndex[loadTestKey]; ok {
		res.LoadTest = &f.tests[i].tc
	}

	// Tests, by type, in the order the run first reported them.
	r.Tests = Tests{SmokeTests: []TestCase{}, RegressionTests: []TestCase{}, PerformanceTests: []TestCase{}}
	var tr TestResults
	for _, e := range f.tests {
		switch e.tc.Type {
		case "regression":
			r.Tests.RegressionTests = append(r.Tests.RegressionTests, e.tc)
		case "performance":
			r.Tests.PerformanceTests = append(r.Tests.PerformanceTests, e.tc)
		default:
			r.Tests.SmokeTests = append(r.Tests.SmokeTests, e.tc)
		}
		tr.Total++
		switch e.tc.Status {
		case "PASS":
			tr.Passed++
		case "FAIL":
			tr.Failed++
			msg := fmt.Sprintf("%s test %s failed", e.tc.Type, e.tc.Name)
			if e.tc.Error != "" {
				msg += ": " + e.tc.Error
			}
			f.drafts = append(f.drafts, &draft{pos: e.pos, issue: Issue{Severity: SeverityCritical, Type: "TEST", Message: msg, Time: isoTime(e.time)}})
		}
	}
	if f.testFail != "" && tr.Failed == 0 {
		f.drafts = append(f.drafts, &draft{pos: f.testFailP, issue: Issue{Severity: SeverityCritical, Type: "TEST", Message: "tests failed: " + f.testFail, Time: isoTime(f.testFailT)}})
	}
	// The run ended during a rollback another service began while the tests
	// ran, before the tester's outcome: say so, since their results are not
	// part of the report.
	if rs := st.RollbackStart.GetRollbackStarted(); final && st.TestStart != nil && !st.TestsEnded() && rs != nil && rs.GetRequestedBy() != "tester" {
		msg := "tests stopped: rollback started"
		if rs.GetRequestedBy() != "" {
			msg += " by " + rs.GetRequestedBy()
		}
		if rs.GetReason() != "" {
			msg += ": " + rs.GetReason()
		}
		msg += "; the tests had not reported an outcome when the run ended"
		f.drafts = append(f.drafts, &draft{pos: f.rollbackStartPos, issue: Issue{Severity: SeverityWarning, Type: "TEST", Message: msg, Time: isoTime(evTime(st.RollbackStart))}})
	}

	r.Issues = f.issues()
	critical := 0
	for _, i := range r.Issues {
		if i.Severity == SeverityCritical {
			critical++
		}
	}

	// The QC metrics.
	cur := Current{APIHealth: f.apiHealth(), DBHealth: f.checkHealth(info.checkKinds["postgres"], "postgres", "postgresql"),
		CacheHealth: f.checkHealth(info.checkKinds["redis"], "redis")}
	cur.ResponseTimeP95, cur.ResponseTimeP95Source = f.metric(MetricP95)
	cur.ErrorRate, cur.ErrorRateSource = f.metric(MetricErrorRate)

	r.Metrics = Metrics{
		PreDeployment:  f.baseline,
		PostDeployment: f.post,
		Comparison:     compare(f.baseline, f.post),
		Current:        cur,
	}
	r.Monitoring = f.monitoring

	perf, why := performanceStatus(cur.ResponseTimeP95, cur.ErrorRate, info.limits, f.load, f.loadOK || f.loadStopped)
	r.Summary = Summary{
		OverallStatus:     overallStatus(st, perf, f.rejectedErrors),
		CriticalIssues:    critical,
		PerformanceStatus: perf,
		PerformanceReason: why,
		TestResults:       tr,
	}

	r.Rollback = Rollback{Executed: st.Status == runstate.RolledBack || st.Status == runstate.RollbackFailed}
	if rs := st.RollbackStart; rs != nil {
		reason := firstOf(rs.GetRollbackStarted().GetReason(), f.firstRollbackRequest().GetReason())
		r.Rollback.Reason = nonEmpty(reason)
		r.Rollback.RequestedBy = nonEmpty(st.RollbackRequestedBy())
		if end := st.RollbackEnd; end != nil {
			r.Rollback.Duration = ptr(FormatDuration(evTime(end).Sub(evTime(rs))))
		}
		r.Rollback.Verification = f.verification()
	}
	r.OperatorTodo = append([]TodoItem{}, f.todo...)
	if st.RunFailed != nil && final && st.Status == runstate.Failed && !st.RollbackUnderWay() {
		// A failure nothing undid: the rollback asked for, and the plan's
		// described steps left to the operator.
		r.Rollback.NothingUndone = true
		if rr := f.firstRollbackRequest(); rr != nil {
			r.Rollback.Reason = nonEmpty(rr.GetReason())
			r.Rollback.RequestedBy = nonEmpty(rr.GetRequestedBy())
		}
		for _, d := range info.described {
			r.OperatorTodo = append(r.OperatorTodo, TodoItem{Step: d, Phase: "rollback", Note: NoteNothingUndone, Time: isoTime(f.end)})
		}
	}

	r.Recommendations = recommendations(cur.ResponseTimeP95, cur.ErrorRate, tr.Failed)
	res.QCSummary = qcSummary(r, f.headerTime(final), tr, f.tests, info.limits)
	res.Phases = f.phases(final)
	return res
}

// verification is the rollback's verification for the report, nil when
// rollback.started named no suites.
func (f *fold) verification() *RollbackVerification {
	st := f.state
	names := st.RollbackVerify
	if len(names) == 0 {
		return nil
	}
	v := &RollbackVerification{Suites: slices.Clone(names), Status: VerifyPending, Tests: []TestCase{}}
	out := st.VerifyOutcome
	result := out.GetRollbackVerified()
	switch {
	case result != nil:
		v.Status = VerifyPass
	case out != nil:
		v.Status = VerifyFail
		result = out.GetRollbackVerifyFailed()
	case st.RollbackEnd.GetRollbackFailed() != nil:
		v.Status = VerifyNotRun
	}
	for _, c := range result.GetTests() {
		tc := testCase(c)
		v.Tests = append(v.Tests, tc)
		switch tc.Status {
		case "PASS":
			v.Passed++
		case "FAIL":
			v.Failed++
		}
	}
	return v
}

// verifyFailedMessage is the issue of a failed rollback verification: the
// suites and every test that failed, with why.
func verifyFailedMessage(suites []string, r *runbookv1.TestSuiteResult) string {
	var failed []string
	for _, c := range r.GetTests() {
		if strings.EqualFold(c.GetStatus(), "FAIL") {
			failed = append(failed, fmt.Sprintf("%s (%s)", c.GetName(), firstOf(c.GetError(), "failed")))
		}
	}
	msg := fmt.Sprintf("rollback verification failed (re-ran %s): production state uncertain", strings.Join(suites, ", "))
	if len(failed) > 0 {
		msg += fmt.Sprintf("; %d of %d test(s) failed: %s", len(failed), len(r.GetTests()), strings.Join(failed, ", "))
	}
	return msg
}

// testsPending: the run is final, its tests began and have no outcome.
func (f *fold) testsPending() bool {
	return f.done && f.state.TestStart != nil && !f.state.TestsEnded()
}

// monitorPending: the run is over, its window started and its
// monitor.completed is not in yet.
func (f *fold) monitorPending() bool {
	return f.done && f.state.MonitorStart != nil && !f.state.MonitorCompleted
}

// lateMonitorEvent reports whether ev is the monitor.completed of a run
// that ended while its window was open: how much of the window was
// watched still belongs in the report.
func (f *fold) lateMonitorEvent(ev *runbookv1.Event) bool {
	return f.monitorPending() && ev.GetMonitorCompleted() != nil
}

// firstRollbackRequest is the run's first rollback.requested, nil when none.
func (f *fold) firstRollbackRequest() *runbookv1.RollbackRequested {
	if len(f.state.RollbackRequests) == 0 {
		return nil
	}
	return f.state.RollbackRequests[0].GetRollbackRequested()
}

// lateTestEvent reports whether ev is the tester's, of a run that ended
// while its tests ran, before their outcome: it still belongs in the report.
func (f *fold) lateTestEvent(ev *runbookv1.Event) bool {
	return f.testsPending() && strings.HasPrefix(ev.GetType(), "test.")
}

func (f *fold) headerTime(final bool) time.Time {
	if final {
		return f.end
	}
	return f.last
}

// issues resolves the drafts: a step failure that a later attempt of the
// same step made good is a WARNING; deploy.failed or rollback.failed is
// listed only when no step failure of that phase already says why.
func (f *fold) issues() []Issue {
	criticalStep := map[string]bool{}
	for _, d := range f.drafts {
		if d.step == nil {
			continue
		}
		if f.lastSuccess[*d.step] > d.pos {
			d.issue.Severity = SeverityWarning
			d.issue.Message += "; a later attempt succeeded"
		} else {
			criticalStep[d.step.phase] = true
		}
	}
	slices.SortStableFunc(f.drafts, func(a, b *draft) int { return a.pos - b.pos })
	out := []Issue{}
	for _, d := range f.drafts {
		if d.runFailure != "" && criticalStep[d.runFailure] {
			continue
		}
		out = append(out, d.issue)
	}
	return out
}

// apiHealth: the deploy's health steps (their latest attempt) and the smoke
// tests whose name says "health". Any failure → UNHEALTHY, else any success
// → HEALTHY, else Unknown.
func (f *fold) apiHealth() string {
	ok, bad := false, false
	for k := range f.healthSteps {
		if f.stepOK[k] {
			ok = true
		} else {
			bad = true
		}
	}
	for _, e := range f.tests {
		if !strings.Contains(strings.ToLower(e.tc.Name), "health") {
			continue
		}
		switch e.tc.Status {
		case "PASS":
			ok = true
		case "FAIL":
			bad = true
		}
	}
	switch {
	case bad:
		return Unhealthy
	case ok:
		return Healthy
	}
	return Unknown
}

// checkHealth: the pre-flight checks of those kinds. Any FAIL → CONNECTION
// FAILED; otherwise PASS (or WARN: the server answered) → CONNECTED. With
// no result of those kinds: "not checked" when the plan has no such check
// (planned), else Unknown (the run ended before its pre-flight).
func (f *fold) checkHealth(planned bool, kinds ...string) string {
	out := NotChecked
	if planned {
		out = Unknown
	}
	for _, c := range f.checks {
		if !slices.Contains(kinds, strings.ToLower(c.GetKind())) {
			continue
		}
		switch c.GetStatus() {
		case runbookv1.CheckStatus_CHECK_STATUS_FAIL:
			return ConnectionFailed
		case runbookv1.CheckStatus_CHECK_STATUS_PASS, runbookv1.CheckStatus_CHECK_STATUS_WARN:
			out = Connected
		}
	}
	return out
}

// metric resolves a QC metric (api_response_time_p95 or error_rate) from
// what measured it, never from a breach's value nor from samples taken
// during the deploy (the monitor keeps those out of its stats):
//
//  1. the watch window's judged samples (monitor.completed stats): the p95
//     of the p95 samples, the mean error rate;
//  2. the window cut short before it judged one (a rollback, a failed
//     deploy): the load test's result, stopped or not;
//  3. else the smoke tests: the p95 of their latencies, the share of them
//     that failed;
//  4. else unknown (nothing measured it).
func (f *fold) metric(name string) (*float64, string) {
	if st := f.stats[name]; st != nil && st.GetSamples() > 0 {
		v := st.GetMean()
		if name == MetricP95 {
			v = st.GetP95()
		}
		if finite(v) {
			return ptr(v), SourceMonitor
		}
	}
	if l := f.load; l != nil && l.GetRequests() > 0 {
		v := l.GetErrorRate()
		if name == MetricP95 {
			v = l.GetP95Ms()
		}
		if finite(v) {
			return ptr(v), SourceLoadTest
		}
	}
	var latencies []float64
	failed := 0
	load, hasLoad := f.testIndex[loadTestKey]
	for i, e := range f.tests {
		if hasLoad && i == load {
			continue
		}
		switch e.tc.Status {
		case "PASS", "FAIL":
			latencies = append(latencies, float64(e.tc.DurationMS))
			if e.tc.Status == "FAIL" {
				failed++
			}
		}
	}
	if len(latencies) == 0 {
		return nil, ""
	}
	if name == MetricP95 {
		slices.Sort(latencies)
		// Nearest rank.
		return ptr(latencies[int(math.Ceil(0.95*float64(len(latencies))))-1]), SourceSmoke
	}
	return ptr(float64(failed) / float64(len(latencies))), SourceSmoke
}

func (f *fold) phases(final bool) []Phase {
	var out []Phase
	addPhase := func(name string, from, to time.Time) {
		if !from.IsZero() && !to.IsZero() && !to.Before(from) {
			out = append(out, Phase{Name: name, Duration: to.Sub(from)})
		}
	}
	addPhase("preflight", f.preflightStart, f.preflightEnd)
	st := f.state
	addPhase("deploy", evTime(st.DeployStart), evTime(st.DeployEnd))
	if final && st.DeployEnd.GetDeployDone() != nil {
		addPhase("verify", evTime(st.DeployEnd), f.end)
	}
	addPhase("rollback", evTime(st.RollbackStart), evTime(st.RollbackEnd))
	if final && f.haveStart {
		addPhase("total", f.start, f.end)
	}
	return out
}

func compare(pre, post map[string]float64) map[string]Comparison {
	out := map[string]Comparison{}
	for k, a := range pre {
		b, ok := post[k]
		if !ok {
			continue
		}
		if !finite(b - a) {
			continue // beyond float64: nothing sensible to show
		}
		c := Comparison{Pre: a, Post: b, Change: roundSig(b - a)}
		if a != 0 {
			c.ChangePercent = fptr(round((b-a)/a*100, 2))
		}
		out[k] = c
	}
	return out
}

func planErrorMessage(e *runbookv1.PlanError) string {
	var b strings.Builder
	b.WriteString(orDash(e.GetPath()))
	if e.GetLine() > 0 {
		fmt.Fprintf(&b, " (line %d:%d)", e.GetLine(), e.GetColumn())
	}
	b.WriteString(": ")
	b.WriteString(e.GetMessage())
	if e.GetValue() != "" {
		fmt.Fprintf(&b, " (got %q)", e.GetValue())
	}
	return b.String()
}

// ---- small helpers ----

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func ptr[T any](v T) *T { return &v }

// fptr is a number for the JSON: nil (null) when it is NaN or infinite,
// which encoding/json cannot write.
func fptr(v float64) *float64 {
	if !finite(v) {
		return nil
	}
	return &v
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// RevertLinks are the runs that revert the run of st (its revert.requested,
// runstate.State.RevertRequests), each once, in stream order.
func RevertLinks(st *runstate.State) []RunLink {
	var out []RunLink
	seen := map[string]bool{}
	for _, e := range st.RevertRequests {
		rr := e.GetRevertRequested()
		if rr.GetByRun() == "" || seen[rr.GetByRun()] {
			continue
		}
		seen[rr.GetByRun()] = true
		out = append(out, RunLink{Run: rr.GetByRun(), ChangeID: rr.GetChangeId(), Reason: rr.GetReason(), RequestedBy: rr.GetRequestedBy()})
	}
	return out
}

// Link adds to a report (a published one: report.ready) the links the run
// learned after it: the runs that revert it (RevertLinks of the run's
// whole history, report.ready and after included).
func (r *Report) Link(st *runstate.State) {
	r.RevertedBy = RevertLinks(st)
}

// LinkLines are the report's links in words, one line each, for the QC
// summary's readers (runbook report): "Reverts: run R (CR-1) — why" and
// "Reverted by: run R2 (REVERT-CR-1), requested by oncall — why".
func LinkLines(r *Report) []string {
	var out []string
	if l := r.Reverts; l != nil {
		out = append(out, "Reverts: "+linkText(*l))
	}
	for _, l := range r.RevertedBy {
		out = append(out, "Reverted by: "+linkText(l))
	}
	return out
}

func linkText(l RunLink) string {
	s := "run " + l.Run
	if l.ChangeID != "" {
		s += " (" + l.ChangeID + ")"
	}
	if l.RequestedBy != "" {
		s += ", requested by " + l.RequestedBy
	}
	if l.Reason != "" {
		s += " — " + l.Reason
	}
	return s + " (runbook report " + l.Run + ")"
}
