package cli

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/plan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Describe turns one event into the phase it belongs to and one line an
// operator can read at 2 a.m.
func Describe(ev *runbookv1.Event) (phase, text string) {
	switch p := ev.Payload.(type) {
	case *runbookv1.Event_ChangeRequested:
		return "SUBMIT", fmt.Sprintf("%s %q requested by %s", p.ChangeRequested.GetChangeId(), p.ChangeRequested.GetTitle(), or(ev.GetActor(), p.ChangeRequested.GetRequester()))
	case *runbookv1.Event_ChangeRejected:
		var b strings.Builder
		fmt.Fprintf(&b, "✗ plan rejected: %d error(s)", len(p.ChangeRejected.GetErrors()))
		for _, e := range p.ChangeRejected.GetErrors() {
			fmt.Fprintf(&b, "\n%22s line %d: %s: %s", "", e.GetLine(), e.GetPath(), e.GetMessage())
		}
		return "SUBMIT", b.String()
	case *runbookv1.Event_PreflightStarted:
		return "PRE-FLIGHT", fmt.Sprintf("started: %d check(s)", p.PreflightStarted.GetChecks())
	case *runbookv1.Event_PlanAssessed:
		a := p.PlanAssessed
		appr := "none"
		if len(a.GetApprovalsRequired()) > 0 {
			appr = strings.Join(a.GetApprovalsRequired(), ", ")
		}
		return "PLAN", fmt.Sprintf("risk %s (max score %d), approvals needed: %s", a.GetLevel(), a.GetMaxScore(), appr)
	case *runbookv1.Event_PreflightPassed:
		return "PRE-FLIGHT", "✔ passed: " + checkLine(p.PreflightPassed)
	case *runbookv1.Event_BackupDone:
		return "PRE-FLIGHT", fmt.Sprintf("backup: %d file(s) in %s", len(p.BackupDone.GetFiles()), p.BackupDone.GetDir())
	case *runbookv1.Event_PreflightFailed:
		return "PRE-FLIGHT", "✗ FAILED: " + p.PreflightFailed.GetReason()
	case *runbookv1.Event_RunWaiting:
		return "GATE", waitingLine(p.RunWaiting)
	case *runbookv1.Event_ApprovalGranted:
		a := p.ApprovalGranted
		return "GATE", fmt.Sprintf("✔ approved as %s by %s%s", a.GetRole(), or(a.GetApprover(), ev.GetActor()), suffix(a.GetComment()))
	case *runbookv1.Event_ApprovalRejected:
		a := p.ApprovalRejected
		return "GATE", fmt.Sprintf("✗ REJECTED as %s by %s%s", a.GetRole(), or(a.GetApprover(), ev.GetActor()), suffix(a.GetReason()))
	case *runbookv1.Event_ApprovalRefused:
		a := p.ApprovalRefused
		return "GATE", fmt.Sprintf("⚠ approval refused: %s as %s — %s", or(a.GetApprover(), ev.GetActor()), a.GetRole(), a.GetReason())
	case *runbookv1.Event_RunExpired:
		return "GATE", "✗ EXPIRED: " + p.RunExpired.GetReason()
	case *runbookv1.Event_RunCancelled:
		return "GATE", "✗ CANCELLED: " + p.RunCancelled.GetReason()
	case *runbookv1.Event_RunFailed:
		return "ROLLBACK", "✗✗ FAILED: " + p.RunFailed.GetReason()
	case *runbookv1.Event_DeployStarted:
		return "ACT", fmt.Sprintf("deploy started: %d step(s)", p.DeployStarted.GetSteps())
	case *runbookv1.Event_DeployStepStarted:
		return "ACT", stepLine("→", p.DeployStepStarted)
	case *runbookv1.Event_DeployStepSucceeded:
		return "ACT", stepLine("✔", p.DeployStepSucceeded)
	case *runbookv1.Event_DeployStepFailed:
		return "ACT", stepLine("✗", p.DeployStepFailed)
	case *runbookv1.Event_DeployStepOutput:
		if outputList(ev) == "rollback" {
			return "ROLLBACK", outputLines(p.DeployStepOutput)
		}
		return "ACT", outputLines(p.DeployStepOutput)
	case *runbookv1.Event_DeployDone:
		return "ACT", fmt.Sprintf("✔ deploy done: %d step(s) in %d ms", p.DeployDone.GetStepsSucceeded(), p.DeployDone.GetDurationMs())
	case *runbookv1.Event_DeployFailed:
		return "ACT", "✗ deploy FAILED at " + p.DeployFailed.GetFailedStep() + ": " + p.DeployFailed.GetError()
	case *runbookv1.Event_MonitorStarted:
		return "MONITOR", fmt.Sprintf("watching for %s every %s", p.MonitorStarted.GetWindow(), p.MonitorStarted.GetInterval())
	case *runbookv1.Event_ThresholdViolated:
		t := p.ThresholdViolated
		return "MONITOR", fmt.Sprintf("⚠ %s %s = %s > threshold %s", t.GetSeverity(), t.GetMetric(), plan.FormatMetric(t.GetMetric(), t.GetValue()), plan.FormatMetric(t.GetMetric(), t.GetThreshold()))
	case *runbookv1.Event_MonitorCompleted:
		m := p.MonitorCompleted
		return "MONITOR", fmt.Sprintf("window ended: %d sample(s), %d violation(s)%s", m.GetSamples(), m.GetViolations(), suffix(m.GetReason()))
	case *runbookv1.Event_TestStarted:
		return "TEST", fmt.Sprintf("started: %d smoke test(s), load test: %v", p.TestStarted.GetSmokeTests(), p.TestStarted.GetLoadTest())
	case *runbookv1.Event_TestSmokePassed:
		return "TEST", fmt.Sprintf("✔ smoke tests %d/%d passed", p.TestSmokePassed.GetPassed(), p.TestSmokePassed.GetPassed()+p.TestSmokePassed.GetFailed())
	case *runbookv1.Event_TestSmokeFailed:
		var failed []string
		for _, c := range p.TestSmokeFailed.GetTests() {
			if c.GetStatus() == "FAIL" {
				failed = append(failed, c.GetName()+" ("+c.GetError()+")")
			}
		}
		return "TEST", fmt.Sprintf("✗ smoke tests %d/%d passed; failed: %s", p.TestSmokeFailed.GetPassed(), p.TestSmokeFailed.GetPassed()+p.TestSmokeFailed.GetFailed(), strings.Join(failed, "; "))
	case *runbookv1.Event_TestLoadProgress:
		l := p.TestLoadProgress
		return "TEST", fmt.Sprintf("load: %ds, %d requests, %d errors, p95 %s", l.GetElapsedMs()/1000, l.GetRequests(), l.GetErrors(), plan.FormatMetric(plan.MetricP95, l.GetP95Ms()))
	case *runbookv1.Event_TestLoadPassed:
		return "TEST", "✔ load test passed: " + loadLine(p.TestLoadPassed)
	case *runbookv1.Event_TestLoadFailed:
		return "TEST", "✗ load test FAILED: " + loadLine(p.TestLoadFailed)
	case *runbookv1.Event_TestPassed:
		return "TEST", fmt.Sprintf("✔ all tests passed (%d)%s", p.TestPassed.GetPassed(), suffix(p.TestPassed.GetReason()))
	case *runbookv1.Event_TestFailed:
		if p.TestFailed.GetStopped() != "" {
			return "TEST", "■ tests STOPPED: " + p.TestFailed.GetStopped()
		}
		return "TEST", fmt.Sprintf("✗ tests FAILED: %d failed%s", p.TestFailed.GetFailed(), suffix(p.TestFailed.GetReason()))
	case *runbookv1.Event_RollbackRequested:
		return "ROLLBACK", fmt.Sprintf("requested by %s: %s", p.RollbackRequested.GetRequestedBy(), p.RollbackRequested.GetReason())
	case *runbookv1.Event_RollbackStarted:
		return "ROLLBACK", fmt.Sprintf("started: %d step(s) — %s", p.RollbackStarted.GetSteps(), p.RollbackStarted.GetReason())
	case *runbookv1.Event_RollbackStepStarted:
		return "ROLLBACK", stepLine("→", p.RollbackStepStarted)
	case *runbookv1.Event_RollbackStepSucceeded:
		return "ROLLBACK", stepLine("✔", p.RollbackStepSucceeded)
	case *runbookv1.Event_RollbackStepFailed:
		return "ROLLBACK", stepLine("✗", p.RollbackStepFailed)
	case *runbookv1.Event_RollbackDone:
		return "ROLLBACK", fmt.Sprintf("✔ rolled back: %d step(s) in %d ms", p.RollbackDone.GetStepsSucceeded(), p.RollbackDone.GetDurationMs())
	case *runbookv1.Event_RollbackFailed:
		return "ROLLBACK", "✗✗ ROLLBACK FAILED — production is in an unknown state: " + p.RollbackFailed.GetError()
	case *runbookv1.Event_RollbackVerified:
		r := p.RollbackVerified
		return "ROLLBACK", fmt.Sprintf("✔ rollback verified: %d of %d test(s) passed after the rollback", r.GetPassed(), len(r.GetTests()))
	case *runbookv1.Event_RollbackVerifyFailed:
		return "ROLLBACK", "✗✗ ROLLBACK VERIFICATION FAILED — production state uncertain: " + verifyFailures(p.RollbackVerifyFailed)
	case *runbookv1.Event_ReportReady:
		return "REPORT", "report ready: " + p.ReportReady.GetStatus()
	case *runbookv1.Event_EventDeadLettered:
		return "PLUMBING", fmt.Sprintf("⚠ dead-lettered by %s: %s", p.EventDeadLettered.GetConsumer(), p.EventDeadLettered.GetReason())
	}
	return strings.ToUpper(strings.SplitN(ev.GetType(), ".", 2)[0]), ev.GetType()
}

// verifyFailures names the tests a rollback's verification failed, with why.
func verifyFailures(r *runbookv1.TestSuiteResult) string {
	var failed []string
	for _, c := range r.GetTests() {
		if strings.EqualFold(c.GetStatus(), "FAIL") {
			failed = append(failed, fmt.Sprintf("%s (%s)", c.GetName(), c.GetError()))
		}
	}
	return fmt.Sprintf("%d of %d test(s) failed: %s", len(failed), len(r.GetTests()), strings.Join(failed, ", "))
}

// waitingLine says what a run held at the gate waits for, in local time.
func waitingLine(w *runbookv1.RunWaiting) string {
	f := w.GetWaitingFor()
	if len(f) == 0 {
		return "⏸ waiting: " + w.GetReason()
	}
	var s string
	if f[0] == "change_window" {
		s = "⏸ waiting for the change window until " + localTime(w.GetUntil())
	} else {
		s = "⏸ waiting for approval by " + strings.Join(f, ", ")
		if w.GetUntil() != nil {
			s += "; the window opens at " + localTime(w.GetUntil())
		}
	}
	if w.GetDeadline() != nil {
		s += "; expires at " + localTime(w.GetDeadline())
	}
	return s
}

func localTime(t *timestamppb.Timestamp) string {
	return t.AsTime().Local().Format("2006-01-02 15:04:05 MST")
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

func stepLine(mark string, s *runbookv1.StepEvent) string {
	if s.GetManual() {
		// A described step: shown to the operator, never executed, so
		// neither a ✔ nor a duration.
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
	return line
}

// outputLines shows a step's live output one line per output line,
// indented under the step and marked with its stream.
func outputLines(o *runbookv1.StepOutput) string {
	var b strings.Builder
	for i, l := range strings.Split(strings.TrimRight(o.GetText(), "\n"), "\n") {
		if i > 0 {
			fmt.Fprintf(&b, "\n%21s", "") // under the text column of watch
		}
		fmt.Fprintf(&b, "  │ %s: %s", or(o.GetStream(), "stdout"), strings.TrimRight(l, "\r"))
	}
	return b.String()
}

// outputList is the step list (steps, finally, rollback) of an output
// event, the first of its id parts: <run>/deploy.step.output/<list>/...
func outputList(ev *runbookv1.Event) string {
	rest, ok := strings.CutPrefix(ev.GetId(), ev.GetRunId()+"/"+ev.GetType()+"/")
	if !ok {
		return ""
	}
	list, _, _ := strings.Cut(rest, "/")
	return list
}

func loadLine(l *runbookv1.LoadResult) string {
	er, p95 := plan.MetricErrorRate, plan.MetricP95
	return fmt.Sprintf("%d VUs, %d requests, error rate %s (gate %s), p95 %s (gate %s)%s",
		l.GetVus(), l.GetRequests(), plan.FormatMetric(er, l.GetErrorRate()), plan.FormatMetric(er, l.GetGateErrorRate()),
		plan.FormatMetric(p95, l.GetP95Ms()), plan.FormatMetric(p95, l.GetGateP95Ms()), suffix(l.GetReason()))
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
