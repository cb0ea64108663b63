// Package vocab is runbook's one event vocabulary: for every event type,
// the phase of the runbook it belongs to and one sentence an operator can
// read at 2 a.m. `runbook watch` and `replay`, the CLI's control commands
// and the dashboard's timeline all word an event through Describe, so an
// event reads the same wherever it is shown. Pure: no NATS, no database.
package vocab

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/plan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Phases an event is filed under, in the order a run meets them.
const (
	PhaseSubmit    = "SUBMIT"
	PhasePreflight = "PRE-FLIGHT"
	PhasePlan      = "PLAN"
	PhaseGate      = "GATE"
	PhaseAct       = "ACT"
	PhaseMonitor   = "MONITOR"
	PhaseTest      = "TEST"
	PhaseRollback  = "ROLLBACK"
	PhaseReport    = "REPORT"
	PhasePlumbing  = "PLUMBING"
)

// Phases lists every phase Describe files an event under.
func Phases() []string {
	return []string{PhaseSubmit, PhasePreflight, PhasePlan, PhaseGate, PhaseAct, PhaseMonitor, PhaseTest, PhaseRollback, PhaseReport, PhasePlumbing}
}

// Describe is the phase ev belongs to and what it says, in one sentence.
// A few events take more than one line (a rejected plan's errors, a step's
// output lines): the lines after the first are joined with "\n", each
// starting with two spaces or "  │ ", for the surface to indent under its
// text column. Times (a waiting run's deadline, when a window opened) are
// in the process's local time zone, with its name. An event of a type
// this vocabulary does not know (none of the schema's) reads as its type.
func Describe(ev *runbookv1.Event) (phase, text string) {
	if phase, text, ok := describe(ev); ok {
		return phase, text
	}
	typ := ev.GetType()
	if typ == "" {
		return PhasePlumbing, "an event without a payload"
	}
	return strings.ToUpper(strings.SplitN(typ, ".", 2)[0]), typ
}

// describe words every payload of the schema; ok is false for an event
// without a known payload.
func describe(ev *runbookv1.Event) (phase, text string, ok bool) {
	switch p := ev.Payload.(type) {
	// ---- submit ----
	case *runbookv1.Event_ChangeRequested:
		c := p.ChangeRequested
		return PhaseSubmit, fmt.Sprintf("%s %q requested by %s", c.GetChangeId(), c.GetTitle(), or(ev.GetActor(), c.GetRequester())), true
	case *runbookv1.Event_ChangeRejected:
		return PhaseSubmit, rejected(p.ChangeRejected), true

	// ---- pre-flight and plan ----
	case *runbookv1.Event_PreflightStarted:
		return PhasePreflight, fmt.Sprintf("started: %d check(s)", p.PreflightStarted.GetChecks()), true
	case *runbookv1.Event_PreflightPassed:
		return PhasePreflight, "✔ passed: " + checkLine(p.PreflightPassed), true
	case *runbookv1.Event_PreflightFailed:
		r := p.PreflightFailed
		return PhasePreflight, fmt.Sprintf("✗ FAILED: %s (%s)", or(r.GetReason(), "no reason given"), checkLine(r)), true
	case *runbookv1.Event_BackupDone:
		// A backup step's (its id names the step list): ACT, or ROLLBACK.
		switch OutputList(ev) {
		case "":
			return PhasePreflight, fmt.Sprintf("backup: %d file(s) in %s", len(p.BackupDone.GetFiles()), p.BackupDone.GetDir()), true
		case "rollback":
			return PhaseRollback, fmt.Sprintf("backup step: the run's backup now holds %d file(s) in %s", len(p.BackupDone.GetFiles()), p.BackupDone.GetDir()), true
		}
		return PhaseAct, fmt.Sprintf("backup step: the run's backup now holds %d file(s) in %s", len(p.BackupDone.GetFiles()), p.BackupDone.GetDir()), true
	case *runbookv1.Event_PlanAssessed:
		a := p.PlanAssessed
		appr := "none"
		if len(a.GetApprovalsRequired()) > 0 {
			appr = strings.Join(a.GetApprovalsRequired(), ", ")
		}
		s := fmt.Sprintf("risk %s (max score %d), approvals needed: %s", a.GetLevel(), a.GetMaxScore(), appr)
		if a.GetRequiresExecutiveApproval() {
			s += "; executive approval required"
		}
		return PhasePlan, s, true

	// ---- the gate ----
	case *runbookv1.Event_RunWaiting:
		return PhaseGate, waitingLine(p.RunWaiting), true
	case *runbookv1.Event_ApprovalGranted:
		a := p.ApprovalGranted
		return PhaseGate, fmt.Sprintf("✔ approved as %s by %s%s", a.GetRole(), or(a.GetApprover(), ev.GetActor()), suffix(a.GetComment())), true
	case *runbookv1.Event_ApprovalRejected:
		a := p.ApprovalRejected
		return PhaseGate, fmt.Sprintf("✗ REJECTED as %s by %s%s", a.GetRole(), or(a.GetApprover(), ev.GetActor()), suffix(or(a.GetReason(), a.GetComment()))), true
	case *runbookv1.Event_ApprovalRefused:
		a := p.ApprovalRefused
		return PhaseGate, fmt.Sprintf("⚠ approval refused: %s as %s — %s", or(a.GetApprover(), ev.GetActor()), a.GetRole(), or(a.GetReason(), "no reason given")), true
	case *runbookv1.Event_RunExpired:
		return PhaseGate, "✗ EXPIRED: " + p.RunExpired.GetReason(), true
	case *runbookv1.Event_RunCancelled:
		return PhaseGate, "✗ CANCELLED: " + p.RunCancelled.GetReason(), true
	case *runbookv1.Event_RunFailed:
		// A failure nothing undid: filed with the rollback that did not run.
		return PhaseRollback, "✗✗ FAILED: " + p.RunFailed.GetReason(), true
	case *runbookv1.Event_RevertRequested:
		// On a run that ended SUCCESS: another run undoes it.
		r := p.RevertRequested
		return PhaseRollback, fmt.Sprintf("↩ to be reverted by run %s (%s), requested by %s%s", r.GetByRun(), or(r.GetChangeId(), "no change id"), or(r.GetRequestedBy(), "an unnamed requester"), suffix(r.GetReason())), true

	// ---- act ----
	case *runbookv1.Event_DeployStarted:
		return PhaseAct, fmt.Sprintf("deploy started: %d step(s)", p.DeployStarted.GetSteps()), true
	case *runbookv1.Event_DeployStepStarted:
		return PhaseAct, stepLine("→", p.DeployStepStarted), true
	case *runbookv1.Event_DeployStepSucceeded:
		return PhaseAct, stepLine("✔", p.DeployStepSucceeded), true
	case *runbookv1.Event_DeployStepFailed:
		return PhaseAct, stepLine("✗", p.DeployStepFailed), true
	case *runbookv1.Event_DeployStepOutput:
		if OutputList(ev) == "rollback" {
			return PhaseRollback, outputLines(p.DeployStepOutput), true
		}
		return PhaseAct, outputLines(p.DeployStepOutput), true
	case *runbookv1.Event_DeployDone:
		return PhaseAct, fmt.Sprintf("✔ deploy done: %d step(s) in %d ms", p.DeployDone.GetStepsSucceeded(), p.DeployDone.GetDurationMs()), true
	case *runbookv1.Event_DeployFailed:
		d := p.DeployFailed
		s := "✗ deploy FAILED"
		if d.GetFailedStep() != "" {
			s += " at " + d.GetFailedStep()
		}
		return PhaseAct, s + ": " + or(d.GetError(), "no error given"), true

	// ---- rollback ----
	case *runbookv1.Event_RollbackRequested:
		r := p.RollbackRequested
		s := fmt.Sprintf("requested by %s: %s", or(r.GetRequestedBy(), "someone"), r.GetReason())
		if r.GetRule() != "" && !strings.Contains(r.GetReason(), r.GetRule()) {
			s += " (rule: " + r.GetRule() + ")"
		}
		return PhaseRollback, s, true
	case *runbookv1.Event_RollbackStarted:
		r := p.RollbackStarted
		s := fmt.Sprintf("started: %d step(s) — %s", r.GetSteps(), r.GetReason())
		if len(r.GetVerify()) > 0 {
			s += "; then re-runs " + strings.Join(r.GetVerify(), ", ") + " to verify it"
		}
		return PhaseRollback, s, true
	case *runbookv1.Event_RollbackStepStarted:
		return PhaseRollback, stepLine("→", p.RollbackStepStarted), true
	case *runbookv1.Event_RollbackStepSucceeded:
		return PhaseRollback, stepLine("✔", p.RollbackStepSucceeded), true
	case *runbookv1.Event_RollbackStepFailed:
		return PhaseRollback, stepLine("✗", p.RollbackStepFailed), true
	case *runbookv1.Event_RollbackDone:
		return PhaseRollback, fmt.Sprintf("✔ rolled back: %d step(s) in %d ms", p.RollbackDone.GetStepsSucceeded(), p.RollbackDone.GetDurationMs()), true
	case *runbookv1.Event_RollbackFailed:
		return PhaseRollback, "✗✗ ROLLBACK FAILED — production is in an unknown state: " + or(p.RollbackFailed.GetError(), "no error given"), true
	case *runbookv1.Event_RollbackVerified:
		r := p.RollbackVerified
		return PhaseRollback, fmt.Sprintf("✔ rollback verified: %d of %d test(s) passed after the rollback", r.GetPassed(), len(r.GetTests())), true
	case *runbookv1.Event_RollbackVerifyFailed:
		return PhaseRollback, "✗✗ ROLLBACK VERIFICATION FAILED — production state uncertain: " + failedTests(p.RollbackVerifyFailed), true

	// ---- monitor ----
	case *runbookv1.Event_MonitorStarted:
		return PhaseMonitor, monitorStarted(p.MonitorStarted), true
	case *runbookv1.Event_ThresholdViolated:
		return PhaseMonitor, Violation(p.ThresholdViolated), true
	case *runbookv1.Event_MonitorCompleted:
		return PhaseMonitor, monitorCompleted(p.MonitorCompleted), true

	// ---- test ----
	case *runbookv1.Event_TestStarted:
		load := "no load test"
		if p.TestStarted.GetLoadTest() {
			load = "and a load test"
		}
		return PhaseTest, fmt.Sprintf("started: %d smoke test(s) %s", p.TestStarted.GetSmokeTests(), load), true
	case *runbookv1.Event_TestSmokePassed:
		s := p.TestSmokePassed
		return PhaseTest, fmt.Sprintf("✔ smoke tests %d/%d passed%s", s.GetPassed(), s.GetPassed()+s.GetFailed(), byType(s)), true
	case *runbookv1.Event_TestSmokeFailed:
		s := p.TestSmokeFailed
		return PhaseTest, fmt.Sprintf("✗ smoke tests %d/%d passed%s; failed: %s", s.GetPassed(), s.GetPassed()+s.GetFailed(), byType(s), failedNames(s)), true
	case *runbookv1.Event_TestLoadProgress:
		l := p.TestLoadProgress
		return PhaseTest, fmt.Sprintf("load: %ds, %d requests, %d errors, p95 %s", l.GetElapsedMs()/1000, l.GetRequests(), l.GetErrors(), plan.FormatMetric(plan.MetricP95, l.GetP95Ms())), true
	case *runbookv1.Event_TestLoadPassed:
		return PhaseTest, "✔ load test passed: " + loadLine(p.TestLoadPassed), true
	case *runbookv1.Event_TestLoadFailed:
		return PhaseTest, "✗ load test FAILED: " + loadLine(p.TestLoadFailed), true
	case *runbookv1.Event_TestPassed:
		return PhaseTest, fmt.Sprintf("✔ all tests passed (%d)%s", p.TestPassed.GetPassed(), suffix(p.TestPassed.GetReason())), true
	case *runbookv1.Event_TestFailed:
		return PhaseTest, testFailed(p.TestFailed), true

	// ---- report ----
	case *runbookv1.Event_ReportReady:
		return PhaseReport, "report ready: " + p.ReportReady.GetStatus(), true
	case *runbookv1.Event_NotificationSent:
		n := p.NotificationSent
		return PhaseReport, fmt.Sprintf("✔ notified via %s (%s)%s", n.GetChannel(), n.GetTarget(), attempts(n.GetAttempts())), true
	case *runbookv1.Event_NotificationFailed:
		n := p.NotificationFailed
		return PhaseReport, fmt.Sprintf("✗ notification via %s (%s) FAILED%s: %s", n.GetChannel(), n.GetTarget(), attempts(n.GetAttempts()), or(n.GetError(), "no error given")), true

	// ---- plumbing ----
	case *runbookv1.Event_EventDeadLettered:
		d := p.EventDeadLettered
		s := "⚠ dead-lettered by " + or(d.GetConsumer(), "a consumer")
		if d.GetDeliveries() > 0 {
			s += fmt.Sprintf(" after %d deliveries", d.GetDeliveries())
		}
		if d.GetOriginalSubject() != "" {
			s += fmt.Sprintf(": %s (stream sequence %d)", d.GetOriginalSubject(), d.GetOriginalSequence())
		}
		if d.GetExhausted() {
			s += " (deliveries exhausted: the run fails)"
		}
		return PhasePlumbing, s + ": " + d.GetReason(), true
	}
	return "", "", false
}

// Violation is the sentence of a threshold.violated: the value against the
// limit it broke, in the metric's one unit — "⚠ CRITICAL error_rate = 30%
// > threshold 1%", "⚠ CRITICAL throughput = 3 fell below minimum 10" — and
// what the gate made of it. The dashboard's live alerts show it too.
func Violation(t *runbookv1.ThresholdViolated) string {
	val, th := plan.FormatMetric(t.GetMetric(), t.GetValue()), plan.FormatMetric(t.GetMetric(), t.GetThreshold())
	sev := or(t.GetSeverity(), "WARNING")
	var s string
	switch {
	case t.GetNoData():
		s = fmt.Sprintf("⚠ %s %s: no data (the sources stopped reporting it)", sev, t.GetMetric())
	case t.GetBelow():
		s = fmt.Sprintf("⚠ %s %s = %s fell below minimum %s", sev, t.GetMetric(), val, th)
	default:
		s = fmt.Sprintf("⚠ %s %s = %s > threshold %s", sev, t.GetMetric(), val, th)
	}
	if t.GetSource() != "" && !t.GetNoData() {
		s += " (source " + t.GetSource() + ")"
	}
	if t.GetWindowSize() > 1 {
		s += fmt.Sprintf("; %d of the last %d samples critical (the gate fails on %d)", t.GetWindowCritical(), t.GetWindowSize(), t.GetWindowNeeded())
	}
	switch {
	case t.GetShadow():
		s += "; shadow mode: recorded, never rolls back"
	case t.GetAutoRollback():
		s += "; auto-rollback"
	case t.GetGateFailed():
		s += "; the gate failed"
	}
	return s
}

// OutputList is the step list (steps, finally, rollback) of a
// deploy.step.output event, the first of its id parts:
// <run>/deploy.step.output/<list>/...
func OutputList(ev *runbookv1.Event) string {
	rest, ok := strings.CutPrefix(ev.GetId(), ev.GetRunId()+"/"+ev.GetType()+"/")
	if !ok {
		return ""
	}
	list, _, _ := strings.Cut(rest, "/")
	return list
}

// byType splits a suite result's cases by type when they are not all
// smoke tests — " (8 smoke, 1 performance)" — so the line agrees with the
// QC summary, whose "Smoke Tests" counts the smoke-typed cases only.
func byType(r *runbookv1.TestSuiteResult) string {
	n := map[string]int{}
	var order []string
	for _, c := range r.GetTests() {
		t := c.GetType()
		if t == "" {
			t = "smoke"
		}
		if n[t] == 0 {
			order = append(order, t)
		}
		n[t]++
	}
	if len(order) < 2 {
		return ""
	}
	parts := make([]string, len(order))
	for i, t := range order {
		parts[i] = fmt.Sprintf("%d %s", n[t], t)
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func rejected(r *runbookv1.ChangeRejected) string {
	var b strings.Builder
	fmt.Fprintf(&b, "✗ plan rejected: %d error(s)", len(r.GetErrors()))
	if n := len(r.GetWarnings()); n > 0 {
		fmt.Fprintf(&b, ", %d warning(s)", n)
	}
	for _, e := range r.GetErrors() {
		b.WriteString("\n  ")
		if e.GetLine() > 0 {
			fmt.Fprintf(&b, "line %d: ", e.GetLine())
		}
		fmt.Fprintf(&b, "%s: %s", or(e.GetPath(), "-"), e.GetMessage())
	}
	return b.String()
}

func checkLine(r *runbookv1.PreflightResult) string {
	pass, warn := 0, 0
	for _, c := range r.GetChecks() {
		switch c.GetStatus() {
		case runbookv1.CheckStatus_CHECK_STATUS_PASS:
			pass++
		case runbookv1.CheckStatus_CHECK_STATUS_WARN:
			warn++
		}
	}
	s := fmt.Sprintf("%d/%d check(s) passed", pass, len(r.GetChecks()))
	if warn > 0 {
		s += fmt.Sprintf(", %d warning(s)", warn)
	}
	return s
}

// waitingLine says what a run held at the gate waits for, in local time.
func waitingLine(w *runbookv1.RunWaiting) string {
	f := w.GetWaitingFor()
	if len(f) == 0 {
		return "⏸ waiting: " + w.GetReason()
	}
	var s string
	if f[0] == "change_window" {
		s = "⏸ waiting for the change window until " + utcTime(w.GetUntil())
	} else {
		s = "⏸ waiting for approval by " + strings.Join(f, ", ")
		if w.GetUntil() != nil {
			s += "; the window opens at " + utcTime(w.GetUntil())
		}
	}
	if w.GetDeadline() != nil {
		s += "; expires at " + utcTime(w.GetDeadline())
	}
	return s
}

// Times in sentences are UTC, ISO 8601, as the CLI and the dashboard print
// them by default (a sentence is the same text wherever it is shown).
func utcTime(t *timestamppb.Timestamp) string {
	return t.AsTime().UTC().Format(time.RFC3339)
}

func utcClock(t *timestamppb.Timestamp) string {
	return t.AsTime().UTC().Format("15:04:05.000Z")
}

// stepLine is one deploy or rollback step event: its mark (→ started,
// ✔ succeeded, ✗ failed), list and 1-based position, name, attempt,
// duration and error. A described (manual) step is never executed, so it
// has neither a ✔ nor a duration: plan.ManualNotExecuted, the operator's
// to-do.
func stepLine(mark string, s *runbookv1.StepEvent) string {
	if s.GetManual() {
		if mark == "→" {
			return fmt.Sprintf("→ [%s %d] %s (a described step)", s.GetList(), s.GetIndex()+1, s.GetName())
		}
		return fmt.Sprintf("☐ [%s %d] %s — %s: the operator's to-do", s.GetList(), s.GetIndex()+1, s.GetName(), plan.ManualNotExecuted)
	}
	line := fmt.Sprintf("%s [%s %d] %s", mark, s.GetList(), s.GetIndex()+1, s.GetName())
	if s.GetAttempt() > 1 {
		line += fmt.Sprintf(" (attempt %d)", s.GetAttempt())
	}
	if s.GetDurationMs() > 0 || mark != "→" {
		line += fmt.Sprintf(" %d ms", s.GetDurationMs())
	}
	if s.GetError() != "" {
		line += ": " + s.GetError()
	}
	if mark == "✗" && s.GetExitCode() != 0 && !strings.Contains(s.GetError(), "exit") {
		line += fmt.Sprintf(" (exit %d)", s.GetExitCode())
	}
	return line
}

// outputLines is a step's live output, one line per output line, each
// marked with its stream.
func outputLines(o *runbookv1.StepOutput) string {
	var b strings.Builder
	for i, l := range strings.Split(strings.TrimRight(o.GetText(), "\n"), "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "  │ %s: %s", or(o.GetStream(), "stdout"), strings.TrimRight(l, "\r"))
	}
	return b.String()
}

// monitorStarted: the window, how often it samples, from when it judges
// (judge_from) and the baseline taken before the deploy.
func monitorStarted(m *runbookv1.MonitorStarted) string {
	s := fmt.Sprintf("watching for %s every %s", m.GetWindow(), m.GetInterval())
	switch m.GetJudgeFrom() {
	case "deploy_done":
		s += ", judged from deploy.done (once the new release serves; samples during the deploy recorded, not judged)"
	case "deploy_started":
		s += ", judged from deploy.started (monitor.start: deploy_started: the deploy's own samples judged too)"
	case "":
	default:
		s += ", judged from " + m.GetJudgeFrom()
	}
	if n := len(m.GetBaseline()); n > 0 || m.GetBaselineWindow() != "" {
		s += fmt.Sprintf("; baseline: %d sample(s)", n)
		switch bw := m.GetBaselineWindow(); {
		case bw == "":
		case strings.Contains(bw, " "):
			s += ", " + bw
		default:
			s += " over " + bw + " before deploy.started"
		}
	}
	return s
}

// monitorCompleted: what the window judged, when it opened, the samples
// of the deploy it recorded without judging, and how much of the window
// was watched (Observed).
func monitorCompleted(m *runbookv1.MonitorCompleted) string {
	s := fmt.Sprintf("window ended: %d sample(s), %d violation(s)%s", m.GetSamples(), m.GetViolations(), suffix(m.GetReason()))
	switch {
	case m.GetWindowOpened() != nil:
		s += "; judged from " + utcClock(m.GetWindowOpened())
	case m.GetSamples() == 0:
		s += "; the judged window never opened"
	}
	if n := m.GetDuringDeploySamples(); n > 0 {
		s += fmt.Sprintf("; %d sample(s) during the deploy recorded, not judged", n)
	}
	if o := Observed(m); o != "" && (m.GetWindowOpened() != nil || m.GetDownMs() > 0) {
		s += "; " + o
	}
	if m.GetRollbackRequested() {
		s += "; rollback requested"
	}
	if m.GetShadowRollback() != "" {
		s += "; shadow mode: would have rolled back: " + m.GetShadowRollback()
	}
	return s
}

func testFailed(o *runbookv1.TestOutcome) string {
	if o.GetStopped() != "" {
		s := "■ tests STOPPED: " + o.GetStopped()
		if sm := o.GetSmoke(); sm != nil || o.GetSmokeNotRun() > 0 {
			done := len(sm.GetTests())
			s += fmt.Sprintf("; %d of %d smoke test(s) completed before the stop", done, done+int(o.GetSmokeNotRun()))
		}
		if l := o.GetLoad(); l != nil {
			s += fmt.Sprintf("; the load test stopped after %s: %d requests, error rate %s, p95 %s (gates not judged)",
				(time.Duration(l.GetDurationMs()) * time.Millisecond).String(), l.GetRequests(),
				plan.FormatMetric(plan.MetricErrorRate, l.GetErrorRate()), plan.FormatMetric(plan.MetricP95, l.GetP95Ms()))
		}
		return s
	}
	s := fmt.Sprintf("✗ tests FAILED: %d failed%s", o.GetFailed(), suffix(o.GetReason()))
	if o.GetRollbackRequested() {
		s += "; rollback requested"
	}
	return s
}

func loadLine(l *runbookv1.LoadResult) string {
	er, p95 := plan.MetricErrorRate, plan.MetricP95
	return fmt.Sprintf("%d VUs, %d requests, %d errors, error rate %s (gate %s), p95 %s (gate %s)%s",
		l.GetVus(), l.GetRequests(), l.GetErrors(), plan.FormatMetric(er, l.GetErrorRate()), plan.FormatMetric(er, l.GetGateErrorRate()),
		plan.FormatMetric(p95, l.GetP95Ms()), plan.FormatMetric(p95, l.GetGateP95Ms()), suffix(l.GetReason()))
}

// failedNames names a suite's failed tests, each with why.
func failedNames(r *runbookv1.TestSuiteResult) string {
	var failed []string
	for _, c := range r.GetTests() {
		if strings.EqualFold(c.GetStatus(), "FAIL") {
			failed = append(failed, fmt.Sprintf("%s (%s)", c.GetName(), or(c.GetError(), "failed")))
		}
	}
	if len(failed) == 0 {
		return "none named"
	}
	return strings.Join(failed, "; ")
}

// failedTests says how many of a rollback verification's tests failed and
// names each, with why.
func failedTests(r *runbookv1.TestSuiteResult) string {
	var failed []string
	for _, c := range r.GetTests() {
		if strings.EqualFold(c.GetStatus(), "FAIL") {
			failed = append(failed, fmt.Sprintf("%s (%s)", c.GetName(), or(c.GetError(), "failed")))
		}
	}
	return fmt.Sprintf("%d of %d test(s) failed: %s", len(failed), len(r.GetTests()), strings.Join(failed, ", "))
}

func attempts(n int32) string {
	if n > 1 {
		return fmt.Sprintf(" after %d attempts", n)
	}
	return ""
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return " — " + s
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
