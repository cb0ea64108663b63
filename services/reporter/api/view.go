package api

import (
	"fmt"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
)

// View is GET /api/v1/runs/{id}: one run as the dashboard shows it, taken
// apart from its events.
type View struct {
	reporter.RunSummary
	State      StateView     `json:"state"`
	Timeline   []TimelineRow `json:"timeline"`
	Checks     []CheckRow    `json:"checks"`
	Steps      []StepRow     `json:"steps"`
	Approvals  []ApprovalRow `json:"approvals"`
	Violations []Violation   `json:"violations"`
	Tests      []TestRow     `json:"tests"`
	Load       *LoadRow      `json:"load,omitempty"`
	// QCSummary is the report's 12-line QC summary ("" until reported).
	QCSummary string `json:"qc_summary"`
}

// StateView is what the status fold knows besides the status.
type StateView struct {
	FinalReason       string    `json:"final_reason,omitempty"`
	RollbackRequested bool      `json:"rollback_requested"`
	RollbackReason    string    `json:"rollback_reason,omitempty"`
	WaitingFor        []string  `json:"waiting_for,omitempty"`
	WaitingUntil      time.Time `json:"waiting_until,omitzero"`
	WaitingDeadline   time.Time `json:"waiting_deadline,omitzero"`
	DeployDone        bool      `json:"deploy_done"`
	MonitorCompleted  bool      `json:"monitor_completed"`
	TestsPassed       bool      `json:"tests_passed"`
	TestsFailed       bool      `json:"tests_failed"`
}

// TimelineRow is one event of the run.
type TimelineRow struct {
	Seq    uint64    `json:"seq"`
	Type   string    `json:"type"`
	Time   time.Time `json:"time"`
	Source string    `json:"source,omitempty"`
	Actor  string    `json:"actor,omitempty"`
	// Phase is the runbook phase the event belongs to.
	Phase string `json:"phase"`
	// Text says in one line what happened.
	Text string `json:"text"`
}

// CheckRow is one pre-flight check result.
type CheckRow struct {
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	Status     string `json:"status"` // PASS, WARN, FAIL
	Value      string `json:"value,omitempty"`
	Threshold  string `json:"threshold,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	Message    string `json:"message,omitempty"`
	Blocking   bool   `json:"blocking"`
}

// StepRow is one deploy or rollback step, at its latest attempt.
type StepRow struct {
	Phase      string    `json:"phase"` // deploy, rollback
	List       string    `json:"list"`  // steps, health, finally
	Index      int32     `json:"index"`
	Name       string    `json:"name"`
	Kind       string    `json:"kind,omitempty"`
	Attempt    int32     `json:"attempt"`
	Status     string    `json:"status"` // RUNNING, SUCCEEDED, FAILED, MANUAL
	Started    time.Time `json:"started,omitzero"`
	Ended      time.Time `json:"ended,omitzero"`
	DurationMS int64     `json:"duration_ms"`
	Error      string    `json:"error,omitempty"`
	ExitCode   int32     `json:"exit_code"`
	OutputTail string    `json:"output_tail,omitempty"`

	// Manual: a described step, shown and never executed (status MANUAL
	// once reached); Note then says so (plan.ManualNotExecuted) where a
	// duration would be.
	Manual bool   `json:"manual,omitempty"`
	Note   string `json:"note,omitempty"`
}

// ApprovalRow is one approval decision.
type ApprovalRow struct {
	Decision string    `json:"decision"` // GRANTED, REJECTED, REFUSED
	Role     string    `json:"role"`
	Approver string    `json:"approver"`
	Comment  string    `json:"comment,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Time     time.Time `json:"time"`
}

// Violation is one threshold.violated.
type Violation struct {
	RunID        string    `json:"run_id"`
	Seq          uint64    `json:"seq"`
	Metric       string    `json:"metric"`
	Value        float64   `json:"value"`
	Threshold    float64   `json:"threshold"`
	Severity     string    `json:"severity"`
	Source       string    `json:"source,omitempty"`
	AutoRollback bool      `json:"auto_rollback"`
	Time         time.Time `json:"time"`
	// ValueText and ThresholdText are Value and Threshold in the metric's
	// one unit (plan.FormatMetric): error_rate 0.3 is "30%".
	ValueText     string `json:"value_text"`
	ThresholdText string `json:"threshold_text"`
}

// TestRow is one smoke, regression or performance test case.
type TestRow struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Status     string `json:"status"` // PASS, FAIL
	DurationMS int64  `json:"duration_ms"`
	Details    string `json:"details,omitempty"`
	Error      string `json:"error,omitempty"`
}

// LoadRow is the load test's result.
type LoadRow struct {
	Passed        bool    `json:"passed"`
	VUs           int32   `json:"vus"`
	DurationMS    int64   `json:"duration_ms"`
	Requests      int64   `json:"requests"`
	Errors        int64   `json:"errors"`
	ErrorRate     float64 `json:"error_rate"`
	P95MS         float64 `json:"p95_ms"`
	RPS           float64 `json:"rps"`
	GateP95MS     float64 `json:"gate_p95_ms"`
	GateErrorRate float64 `json:"gate_error_rate"`
	Reason        string  `json:"reason,omitempty"`
	// Text is the result in one line, every metric in its one unit.
	Text string `json:"text"`
}

// BuildView takes a run apart for the dashboard. Pure.
func BuildView(run *reporter.Run) *View {
	v := &View{
		RunSummary: run.RunSummary,
		Timeline:   []TimelineRow{}, Checks: []CheckRow{}, Steps: []StepRow{},
		Approvals: []ApprovalRow{}, Violations: []Violation{}, Tests: []TestRow{},
	}
	if st := run.State; st != nil {
		v.State = StateView{
			FinalReason: st.FinalReason, RollbackRequested: st.RollbackRequested, RollbackReason: st.RollbackReason,
			WaitingFor: st.WaitingFor, WaitingUntil: st.WaitingUntil, WaitingDeadline: st.WaitingDeadline,
			DeployDone: st.DeployDone, MonitorCompleted: st.MonitorCompleted, TestsPassed: st.TestsPassed, TestsFailed: st.TestsFailed,
		}
	}
	if run.Report != nil {
		v.QCSummary = run.Report.GetQcSummary()
	}
	steps := map[string]int{} // phase/list/index → position in v.Steps
	for _, env := range run.Events {
		ev := env.Event
		t := ev.GetTime().AsTime()
		v.Timeline = append(v.Timeline, TimelineRow{
			Seq: env.Seq, Type: ev.GetType(), Time: t, Source: ev.GetSource(), Actor: ev.GetActor(),
			Phase: phaseOf(ev.GetType()), Text: describe(ev),
		})
		switch p := ev.Payload.(type) {
		case *runbookv1.Event_PreflightPassed:
			v.Checks = appendChecks(v.Checks, p.PreflightPassed)
		case *runbookv1.Event_PreflightFailed:
			v.Checks = appendChecks(v.Checks, p.PreflightFailed)
		case *runbookv1.Event_ApprovalGranted:
			v.Approvals = append(v.Approvals, approval("GRANTED", p.ApprovalGranted, ev, t))
		case *runbookv1.Event_ApprovalRejected:
			v.Approvals = append(v.Approvals, approval("REJECTED", p.ApprovalRejected, ev, t))
		case *runbookv1.Event_ApprovalRefused:
			v.Approvals = append(v.Approvals, approval("REFUSED", p.ApprovalRefused, ev, t))
		case *runbookv1.Event_ThresholdViolated:
			v.Violations = append(v.Violations, violation(env))
		case *runbookv1.Event_TestSmokePassed:
			v.Tests = appendTests(v.Tests, p.TestSmokePassed)
		case *runbookv1.Event_TestSmokeFailed:
			v.Tests = appendTests(v.Tests, p.TestSmokeFailed)
		case *runbookv1.Event_TestLoadPassed:
			v.Load = loadRow(true, p.TestLoadPassed)
		case *runbookv1.Event_TestLoadFailed:
			v.Load = loadRow(false, p.TestLoadFailed)
		}
		if se, phase, status := stepEvent(ev); se != nil {
			key := fmt.Sprintf("%s/%s/%d", phase, se.GetList(), se.GetIndex())
			i, ok := steps[key]
			if !ok {
				i = len(v.Steps)
				steps[key] = i
				v.Steps = append(v.Steps, StepRow{Phase: phase, List: se.GetList(), Index: se.GetIndex()})
			}
			row := &v.Steps[i]
			row.Name, row.Attempt, row.Status, row.Manual = se.GetName(), se.GetAttempt(), status, se.GetManual()
			if se.GetManual() {
				row.Note = plan.ManualNotExecuted
				if status == "SUCCEEDED" {
					row.Status = "MANUAL"
				}
			}
			if se.GetKind() != "" {
				row.Kind = se.GetKind()
			}
			if status == "RUNNING" {
				row.Started, row.Ended, row.Error, row.OutputTail, row.DurationMS, row.ExitCode = t, time.Time{}, "", "", 0, 0
			} else {
				row.Ended, row.DurationMS, row.Error, row.ExitCode, row.OutputTail = t, se.GetDurationMs(), se.GetError(), se.GetExitCode(), se.GetOutputTail()
			}
		}
	}
	return v
}

// stepEvent returns the step of a deploy.step.* or rollback.step.* event,
// its phase (deploy, rollback) and status.
func stepEvent(ev *runbookv1.Event) (*runbookv1.StepEvent, string, string) {
	switch p := ev.Payload.(type) {
	case *runbookv1.Event_DeployStepStarted:
		return p.DeployStepStarted, "deploy", "RUNNING"
	case *runbookv1.Event_DeployStepSucceeded:
		return p.DeployStepSucceeded, "deploy", "SUCCEEDED"
	case *runbookv1.Event_DeployStepFailed:
		return p.DeployStepFailed, "deploy", "FAILED"
	case *runbookv1.Event_RollbackStepStarted:
		return p.RollbackStepStarted, "rollback", "RUNNING"
	case *runbookv1.Event_RollbackStepSucceeded:
		return p.RollbackStepSucceeded, "rollback", "SUCCEEDED"
	case *runbookv1.Event_RollbackStepFailed:
		return p.RollbackStepFailed, "rollback", "FAILED"
	}
	return nil, "", ""
}

func appendChecks(rows []CheckRow, r *runbookv1.PreflightResult) []CheckRow {
	for _, c := range r.GetChecks() {
		rows = append(rows, CheckRow{
			Name: c.GetName(), Kind: c.GetKind(), Status: strings.TrimPrefix(c.GetStatus().String(), "CHECK_STATUS_"),
			Value: c.GetValue(), Threshold: c.GetThreshold(), DurationMS: c.GetDurationMs(), Message: c.GetMessage(), Blocking: c.GetBlocking(),
		})
	}
	return rows
}

func appendTests(rows []TestRow, r *runbookv1.TestSuiteResult) []TestRow {
	for _, c := range r.GetTests() {
		rows = append(rows, TestRow{Name: c.GetName(), Type: c.GetType(), Status: c.GetStatus(), DurationMS: c.GetDurationMs(), Details: c.GetDetails(), Error: c.GetError()})
	}
	return rows
}

func approval(decision string, a *runbookv1.Approval, ev *runbookv1.Event, t time.Time) ApprovalRow {
	who := a.GetApprover()
	if who == "" {
		who = ev.GetActor()
	}
	return ApprovalRow{Decision: decision, Role: a.GetRole(), Approver: who, Comment: a.GetComment(), Reason: a.GetReason(), Time: t}
}

func violation(env eventbus.Envelope) Violation {
	tv := env.Event.GetThresholdViolated()
	return Violation{
		RunID: env.Event.GetRunId(), Seq: env.Seq, Metric: tv.GetMetric(), Value: tv.GetValue(), Threshold: tv.GetThreshold(),
		Severity: tv.GetSeverity(), Source: tv.GetSource(), AutoRollback: tv.GetAutoRollback(), Time: env.Event.GetTime().AsTime(),
		ValueText: plan.FormatMetric(tv.GetMetric(), tv.GetValue()), ThresholdText: plan.FormatMetric(tv.GetMetric(), tv.GetThreshold()),
	}
}

func loadRow(passed bool, l *runbookv1.LoadResult) *LoadRow {
	return &LoadRow{
		Passed: passed, VUs: l.GetVus(), DurationMS: l.GetDurationMs(), Requests: l.GetRequests(), Errors: l.GetErrors(),
		ErrorRate: l.GetErrorRate(), P95MS: l.GetP95Ms(), RPS: l.GetRps(), GateP95MS: l.GetGateP95Ms(), GateErrorRate: l.GetGateErrorRate(),
		Reason: l.GetReason(), Text: loadText(l),
	}
}

// loadText is a load test's result in one line, in each metric's unit.
func loadText(l *runbookv1.LoadResult) string {
	er, p95 := plan.MetricErrorRate, plan.MetricP95
	return fmt.Sprintf("%d VUs, %d requests, %d errors (error rate %s, gate %s), p95 %s (gate %s)",
		l.GetVus(), l.GetRequests(), l.GetErrors(), plan.FormatMetric(er, l.GetErrorRate()), plan.FormatMetric(er, l.GetGateErrorRate()),
		plan.FormatMetric(p95, l.GetP95Ms()), plan.FormatMetric(p95, l.GetGateP95Ms()))
}

// phaseOf is the runbook phase an event type belongs to.
func phaseOf(typ string) string {
	switch {
	case strings.HasPrefix(typ, "change."), strings.HasPrefix(typ, "preflight."), strings.HasPrefix(typ, "backup."):
		return "PRE-FLIGHT"
	case strings.HasPrefix(typ, "plan."), strings.HasPrefix(typ, "approval."), strings.HasPrefix(typ, "run.waiting"):
		return "PLAN"
	case strings.HasPrefix(typ, "deploy."), strings.HasPrefix(typ, "rollback."), typ == "run.failed":
		return "ACT"
	case strings.HasPrefix(typ, "monitor."), strings.HasPrefix(typ, "threshold."), strings.HasPrefix(typ, "test."):
		return "TEST"
	}
	return "REPORT"
}

// describe says in one line what an event means.
func describe(ev *runbookv1.Event) string {
	switch p := ev.Payload.(type) {
	case *runbookv1.Event_ChangeRequested:
		c := p.ChangeRequested
		return strings.TrimSpace(fmt.Sprintf("%s %s, requested by %s", c.GetChangeId(), c.GetTitle(), c.GetRequester()))
	case *runbookv1.Event_ChangeRejected:
		return fmt.Sprintf("plan invalid: %d errors", len(p.ChangeRejected.GetErrors()))
	case *runbookv1.Event_PreflightStarted:
		return fmt.Sprintf("%d checks", p.PreflightStarted.GetChecks())
	case *runbookv1.Event_PreflightPassed:
		return fmt.Sprintf("%d checks passed", len(p.PreflightPassed.GetChecks()))
	case *runbookv1.Event_PreflightFailed:
		return p.PreflightFailed.GetReason()
	case *runbookv1.Event_BackupDone:
		return fmt.Sprintf("%d files saved in %s", len(p.BackupDone.GetFiles()), p.BackupDone.GetDir())
	case *runbookv1.Event_PlanAssessed:
		a := p.PlanAssessed
		s := fmt.Sprintf("risk %s (max score %d)", a.GetLevel(), a.GetMaxScore())
		if len(a.GetApprovalsRequired()) > 0 {
			s += ", approvals: " + strings.Join(a.GetApprovalsRequired(), ", ")
		}
		return s
	case *runbookv1.Event_ApprovalGranted:
		return approvalText(p.ApprovalGranted, ev)
	case *runbookv1.Event_ApprovalRejected:
		return approvalText(p.ApprovalRejected, ev)
	case *runbookv1.Event_ApprovalRefused:
		return approvalText(p.ApprovalRefused, ev)
	case *runbookv1.Event_RunWaiting:
		return "waiting for " + strings.Join(p.RunWaiting.GetWaitingFor(), ", ")
	case *runbookv1.Event_RunExpired:
		return p.RunExpired.GetReason()
	case *runbookv1.Event_RunCancelled:
		return p.RunCancelled.GetReason()
	case *runbookv1.Event_RunFailed:
		return p.RunFailed.GetReason()
	case *runbookv1.Event_DeployStarted:
		return fmt.Sprintf("%d steps", p.DeployStarted.GetSteps())
	case *runbookv1.Event_DeployDone:
		return fmt.Sprintf("%d steps in %d ms", p.DeployDone.GetStepsSucceeded(), p.DeployDone.GetDurationMs())
	case *runbookv1.Event_DeployFailed:
		return p.DeployFailed.GetError()
	case *runbookv1.Event_RollbackRequested:
		return fmt.Sprintf("by %s: %s", p.RollbackRequested.GetRequestedBy(), p.RollbackRequested.GetReason())
	case *runbookv1.Event_RollbackStarted:
		return p.RollbackStarted.GetReason()
	case *runbookv1.Event_RollbackDone:
		return fmt.Sprintf("%d steps in %d ms", p.RollbackDone.GetStepsSucceeded(), p.RollbackDone.GetDurationMs())
	case *runbookv1.Event_RollbackFailed:
		return p.RollbackFailed.GetError()
	case *runbookv1.Event_RollbackVerified:
		return fmt.Sprintf("rollback verified: %d of %d tests passed", p.RollbackVerified.GetPassed(), len(p.RollbackVerified.GetTests()))
	case *runbookv1.Event_RollbackVerifyFailed:
		var failed []string
		for _, c := range p.RollbackVerifyFailed.GetTests() {
			if strings.EqualFold(c.GetStatus(), "FAIL") {
				failed = append(failed, c.GetName())
			}
		}
		return fmt.Sprintf("rollback verification FAILED, production state uncertain: %d of %d tests failed: %s",
			len(failed), len(p.RollbackVerifyFailed.GetTests()), strings.Join(failed, ", "))
	case *runbookv1.Event_MonitorStarted:
		return fmt.Sprintf("window %s, every %s", p.MonitorStarted.GetWindow(), p.MonitorStarted.GetInterval())
	case *runbookv1.Event_ThresholdViolated:
		tv := p.ThresholdViolated
		return fmt.Sprintf("%s %s = %s > %s", tv.GetSeverity(), tv.GetMetric(), plan.FormatMetric(tv.GetMetric(), tv.GetValue()), plan.FormatMetric(tv.GetMetric(), tv.GetThreshold()))
	case *runbookv1.Event_MonitorCompleted:
		m := p.MonitorCompleted
		return fmt.Sprintf("%d samples, %d violations", m.GetSamples(), m.GetViolations())
	case *runbookv1.Event_TestStarted:
		return fmt.Sprintf("%d smoke tests, load test %t", p.TestStarted.GetSmokeTests(), p.TestStarted.GetLoadTest())
	case *runbookv1.Event_TestSmokePassed:
		return fmt.Sprintf("%d passed", p.TestSmokePassed.GetPassed())
	case *runbookv1.Event_TestSmokeFailed:
		return fmt.Sprintf("%d passed, %d failed", p.TestSmokeFailed.GetPassed(), p.TestSmokeFailed.GetFailed())
	case *runbookv1.Event_TestLoadPassed:
		return fmt.Sprintf("p95 %s, error rate %s", plan.FormatMetric(plan.MetricP95, p.TestLoadPassed.GetP95Ms()), plan.FormatMetric(plan.MetricErrorRate, p.TestLoadPassed.GetErrorRate()))
	case *runbookv1.Event_TestLoadFailed:
		return p.TestLoadFailed.GetReason()
	case *runbookv1.Event_TestPassed:
		return fmt.Sprintf("%d passed", p.TestPassed.GetPassed())
	case *runbookv1.Event_TestFailed:
		if st := p.TestFailed.GetStopped(); st != "" {
			return "tests stopped: " + st
		}
		return p.TestFailed.GetReason()
	case *runbookv1.Event_ReportReady:
		return "final status " + p.ReportReady.GetStatus()
	case *runbookv1.Event_NotificationSent:
		return p.NotificationSent.GetChannel() + " " + p.NotificationSent.GetTarget()
	case *runbookv1.Event_NotificationFailed:
		return p.NotificationFailed.GetChannel() + ": " + p.NotificationFailed.GetError()
	case *runbookv1.Event_EventDeadLettered:
		return p.EventDeadLettered.GetConsumer() + ": " + p.EventDeadLettered.GetReason()
	}
	if se, _, status := stepEvent(ev); se != nil {
		if se.GetManual() {
			if status == "RUNNING" {
				return fmt.Sprintf("%s[%d] %s: a described step", se.GetList(), se.GetIndex(), se.GetName())
			}
			return fmt.Sprintf("%s[%d] %s: %s (the operator's to-do)", se.GetList(), se.GetIndex(), se.GetName(), plan.ManualNotExecuted)
		}
		s := fmt.Sprintf("%s[%d] %s (attempt %d) %s", se.GetList(), se.GetIndex(), se.GetName(), se.GetAttempt(), strings.ToLower(status))
		if se.GetError() != "" {
			s += ": " + se.GetError()
		}
		return s
	}
	return ""
}

func approvalText(a *runbookv1.Approval, ev *runbookv1.Event) string {
	who := a.GetApprover()
	if who == "" {
		who = ev.GetActor()
	}
	s := fmt.Sprintf("%s as %s", who, a.GetRole())
	if a.GetReason() != "" {
		s += ": " + a.GetReason()
	} else if a.GetComment() != "" {
		s += ": " + a.GetComment()
	}
	return s
}
