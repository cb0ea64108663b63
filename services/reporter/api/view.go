package api

import (
	"slices"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/domain/vocab"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/report"
)

// View is GET /api/v1/runs/{id}: one run as the dashboard shows it. What
// the report says — steps, tests, checks, the load test, the QC metrics,
// the rollback, the operator's to-do — comes from the report's own fold
// (report.Generate) over the run's events, so the run page and the report
// cannot disagree; the timeline words each event with the one vocabulary
// (domain/vocab).
type View struct {
	reporter.RunSummary
	State StateView `json:"state"`
	// PhaseBar is the five phases, each with where the run stands in it:
	// the phase a run stopped in is "stopped" (PhaseBarFor).
	PhaseBar   []PhaseCell   `json:"phase_bar"`
	Timeline   []TimelineRow `json:"timeline"`
	Checks     []CheckRow    `json:"checks"`
	Steps      []StepRow     `json:"steps"`
	Approvals  []ApprovalRow `json:"approvals"`
	Violations []Violation   `json:"violations"`
	Tests      []TestRow     `json:"tests"`
	Load       *LoadRow      `json:"load,omitempty"`
	// QCSummary is the report's 12-line QC summary ("" until reported).
	QCSummary string `json:"qc_summary"`
	// Report is the run's report as the reporter builds it from the same
	// events: its summary, metrics, issues, rollback and operator's to-do
	// (nil only when it cannot be built; ReportError says why).
	// ReportFinal is false while the run is in progress: a preview.
	Report      *report.Report `json:"report,omitempty"`
	ReportFinal bool           `json:"report_final"`
	ReportError string         `json:"report_error,omitempty"`
	// QCMetrics are the QC summary's measured values (the report's
	// metrics.current), each in its metric's one unit.
	QCMetrics []QCMetric `json:"qc_metrics"`
	// NothingUndone says, when the report does, that the run failed and
	// nothing was undone (plan.NothingUndone).
	NothingUndone string `json:"nothing_undone,omitempty"`
}

// QCMetric is one value of the QC summary: the error rate or the p95.
type QCMetric struct {
	Metric string   `json:"metric"`
	Value  *float64 `json:"value"`  // null: nothing measured it
	Text   string   `json:"text"`   // plan.FormatMetric, or "Unknown"
	Source string   `json:"source"` // report.SourceMonitor, SourceLoadTest, SourceSmoke
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
	// ApprovalsRequired are the roles that must approve (plan.assessed);
	// DeployStarted: approvals are closed, a cancel is a rollback.
	ApprovalsRequired []string `json:"approvals_required,omitempty"`
	DeployStarted     bool     `json:"deploy_started"`
}

// Phases are the runbook's five phases, as the phase bar shows them.
var Phases = []string{"PRE-FLIGHT", "PLAN", "ACT", "TEST", "REPORT"}

// PhaseCell is one phase of the bar.
type PhaseCell struct {
	Phase string `json:"phase"`
	// State: done, current, pending; for a run that ended other than
	// SUCCESS, stopped (the phase it ended in) and skipped (the phases
	// it never reached; REPORT still comes).
	State string `json:"state"`
}

// barPhase files a vocabulary phase (vocab.Describe) under the bar's
// five; -1: it moves the run to no phase (a rollback, plumbing).
func barPhase(p string) int {
	switch p {
	case vocab.PhaseSubmit, vocab.PhasePreflight:
		return 0
	case vocab.PhasePlan, vocab.PhaseGate:
		return 1
	case vocab.PhaseAct:
		return 2
	case vocab.PhaseMonitor, vocab.PhaseTest:
		return 3
	case vocab.PhaseReport:
		return 4
	}
	return -1
}

// PhaseBarFor is where a run stands in the five phases. In progress: the
// phases before its status's phase are done, that one current. SUCCESS:
// every phase done. Any other end: the furthest phase its events reached
// (a cancel or an expiry moves it nowhere) is where it stopped, the later
// ones were skipped, and REPORT is done once reported.
func PhaseBarFor(status runstate.Status, reported bool, timeline []TimelineRow) []PhaseCell {
	bar := make([]PhaseCell, len(Phases))
	cur := slices.Index(Phases, status.Phase())
	reached := 0
	for _, t := range timeline {
		if t.Type == "run.cancelled" || t.Type == "run.expired" {
			continue
		}
		if i := barPhase(t.Phase); i > reached && i < 4 {
			reached = i
		}
	}
	for i, p := range Phases {
		state := "pending"
		switch {
		case !status.Final():
			if i < cur {
				state = "done"
			} else if i == cur {
				state = "current"
			}
		case i == 4:
			state = "current"
			if reported {
				state = "done"
			}
		case status == runstate.Success || i < reached:
			state = "done"
		case i == reached:
			state = "stopped"
		default:
			state = "skipped"
		}
		bar[i] = PhaseCell{Phase: p, State: state}
	}
	return bar
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

// CheckRow is one check result of the run's latest pre-flight.
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

// StepRow is one deploy or rollback step, at its latest attempt: the
// report's step (report.Step) with when it ran and its output's tail.
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
	// Below: a min gate's value fell below its threshold. Text is the
	// violation's sentence (vocab.Violation), as CLI watch prints it.
	Below bool   `json:"below,omitempty"`
	Text  string `json:"text"`
}

// TestRow is one smoke, regression or performance test of the report.
type TestRow struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Status     string `json:"status"` // PASS, FAIL, SKIP, STOPPED
	DurationMS int64  `json:"duration_ms"`
	Details    string `json:"details,omitempty"`
	Error      string `json:"error,omitempty"`
}

// LoadRow is the load test's result.
type LoadRow struct {
	Passed bool `json:"passed"`
	// Status is the load test's status in the report: PASS, FAIL, or
	// STOPPED (the run's rollback stopped it; gates not judged).
	Status        string  `json:"status"`
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
	// Text is the result in one line, every metric in its one unit: the
	// report's details of its performance test.
	Text string `json:"text"`
}

// BuildView takes a run apart for the dashboard. Pure.
func BuildView(run *reporter.Run) *View {
	v := &View{
		RunSummary: run.RunSummary,
		Timeline:   []TimelineRow{}, Checks: []CheckRow{}, Steps: []StepRow{},
		Approvals: []ApprovalRow{}, Violations: []Violation{}, Tests: []TestRow{}, QCMetrics: []QCMetric{},
	}
	if st := run.State; st != nil {
		v.State = StateView{
			FinalReason: st.FinalReason, RollbackRequested: st.RollbackRequested, RollbackReason: st.RollbackReason,
			WaitingFor: st.WaitingFor, WaitingUntil: st.WaitingUntil, WaitingDeadline: st.WaitingDeadline,
			DeployDone: st.DeployDone, MonitorCompleted: st.MonitorCompleted, TestsPassed: st.TestsPassed, TestsFailed: st.TestsFailed,
			ApprovalsRequired: st.ApprovalsRequired, DeployStarted: st.DeployStarted(),
		}
	}
	if run.Report != nil {
		v.QCSummary = run.Report.GetQcSummary()
	}
	events := make([]*runbookv1.Event, 0, len(run.Events))
	for _, env := range run.Events {
		ev := env.Event
		events = append(events, ev)
		t := ev.GetTime().AsTime()
		phase, text := vocab.Describe(ev)
		v.Timeline = append(v.Timeline, TimelineRow{
			Seq: env.Seq, Type: ev.GetType(), Time: t, Source: ev.GetSource(), Actor: ev.GetActor(), Phase: phase, Text: text,
		})
		switch p := ev.Payload.(type) {
		case *runbookv1.Event_ApprovalGranted:
			v.Approvals = append(v.Approvals, approval("GRANTED", p.ApprovalGranted, ev, t))
		case *runbookv1.Event_ApprovalRejected:
			v.Approvals = append(v.Approvals, approval("REJECTED", p.ApprovalRejected, ev, t))
		case *runbookv1.Event_ApprovalRefused:
			v.Approvals = append(v.Approvals, approval("REFUSED", p.ApprovalRefused, ev, t))
		case *runbookv1.Event_ThresholdViolated:
			v.Violations = append(v.Violations, violation(env))
		}
	}
	v.PhaseBar = PhaseBarFor(run.Status, run.Reported, v.Timeline)
	res, err := report.Generate(run.RunID, events)
	if err != nil {
		v.ReportError = err.Error()
		return v
	}
	if run.State != nil {
		res.Report.Link(run.State) // reverted_by: learned after the report
	}
	v.fromReport(res)
	return v
}

// fromReport fills what the report says: its steps, tests, checks, load
// test, and the report itself.
func (v *View) fromReport(res *report.Result) {
	r := &res.Report
	v.Report, v.ReportFinal = r, res.Final
	cur := r.Metrics.Current
	for _, m := range []QCMetric{
		{Metric: report.MetricErrorRate, Value: cur.ErrorRate, Source: cur.ErrorRateSource},
		{Metric: report.MetricP95, Value: cur.ResponseTimeP95, Source: cur.ResponseTimeP95Source},
	} {
		m.Text = report.Unknown
		if m.Value != nil {
			m.Text = plan.FormatMetric(m.Metric, *m.Value)
		}
		v.QCMetrics = append(v.QCMetrics, m)
	}
	if r.Rollback.NothingUndone {
		v.NothingUndone = plan.NothingUndone
	}
	for _, s := range r.Steps {
		v.Steps = append(v.Steps, StepRow{
			Phase: s.Phase, List: s.List, Index: s.Index, Name: s.Name, Kind: s.Kind, Attempt: s.Attempt, Status: s.Status,
			Started: s.Started, Ended: s.Ended, DurationMS: s.DurationMS, Error: s.Error, ExitCode: s.ExitCode, OutputTail: s.OutputTail,
			Manual: s.Manual, Note: s.Note,
		})
	}
	for _, group := range [][]report.TestCase{r.Tests.SmokeTests, r.Tests.RegressionTests, r.Tests.PerformanceTests} {
		for _, c := range group {
			v.Tests = append(v.Tests, TestRow{Name: c.Name, Type: c.Type, Status: c.Status, DurationMS: c.DurationMS, Details: c.Details, Error: c.Error})
		}
	}
	for _, c := range res.Checks {
		v.Checks = append(v.Checks, CheckRow{
			Name: c.GetName(), Kind: c.GetKind(), Status: strings.TrimPrefix(c.GetStatus().String(), "CHECK_STATUS_"),
			Value: c.GetValue(), Threshold: c.GetThreshold(), DurationMS: c.GetDurationMs(), Message: c.GetMessage(), Blocking: c.GetBlocking(),
		})
	}
	if l, lt := res.Load, res.LoadTest; l != nil && lt != nil {
		v.Load = &LoadRow{
			Passed: lt.Status == "PASS", Status: lt.Status, Text: lt.Details, VUs: l.GetVus(), DurationMS: l.GetDurationMs(), Requests: l.GetRequests(), Errors: l.GetErrors(),
			ErrorRate: l.GetErrorRate(), P95MS: l.GetP95Ms(), RPS: l.GetRps(), GateP95MS: l.GetGateP95Ms(), GateErrorRate: l.GetGateErrorRate(),
			Reason: l.GetReason(),
		}
	}
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
		Below: tv.GetBelow(), Text: vocab.Violation(tv),
	}
}
