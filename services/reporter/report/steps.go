package report

import (
	"time"

	"github.com/kis-core/runbook/domain/plan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Statuses of a step.
const (
	StepRunning   = "RUNNING"
	StepSucceeded = "SUCCEEDED"
	StepFailed    = "FAILED"
	// StepManual: a described step, shown to the operator and never
	// executed (its "succeeded" event says it was listed, not that it ran).
	StepManual = "MANUAL"
)

// Step is one deploy or rollback step of the run at its latest attempt
// (addition), in the order the run first reached them. A described
// (manual) step is MANUAL with Note plan.ManualNotExecuted, never
// SUCCEEDED.
type Step struct {
	Phase      string `json:"phase"` // deploy, rollback
	List       string `json:"list"`  // steps, health, finally; rollback
	Index      int32  `json:"index"` // 0-based position in its list
	Name       string `json:"name"`
	Kind       string `json:"kind,omitempty"`
	Status     string `json:"status"` // RUNNING, SUCCEEDED, FAILED, MANUAL
	Attempt    int32  `json:"attempt"`
	DurationMS int64  `json:"duration_ms"`
	Error      string `json:"error,omitempty"`
	ExitCode   int32  `json:"exit_code,omitempty"`
	Manual     bool   `json:"manual,omitempty"`
	Note       string `json:"note,omitempty"` // a manual step: plan.ManualNotExecuted

	// Not in the report's JSON (the dashboard shows them besides): when
	// the latest attempt started and ended, and its output's last lines.
	Started    time.Time `json:"-"`
	Ended      time.Time `json:"-"`
	OutputTail string    `json:"-"`
}

// stepEvent is the step of a deploy.step.* or rollback.step.* event
// (nil for any other), its phase (deploy, rollback) and the status it
// reports.
func stepEvent(ev *runbookv1.Event) (*runbookv1.StepEvent, string, string) {
	switch p := ev.Payload.(type) {
	case *runbookv1.Event_DeployStepStarted:
		return p.DeployStepStarted, "deploy", StepRunning
	case *runbookv1.Event_DeployStepSucceeded:
		return p.DeployStepSucceeded, "deploy", StepSucceeded
	case *runbookv1.Event_DeployStepFailed:
		return p.DeployStepFailed, "deploy", StepFailed
	case *runbookv1.Event_RollbackStepStarted:
		return p.RollbackStepStarted, "rollback", StepRunning
	case *runbookv1.Event_RollbackStepSucceeded:
		return p.RollbackStepSucceeded, "rollback", StepSucceeded
	case *runbookv1.Event_RollbackStepFailed:
		return p.RollbackStepFailed, "rollback", StepFailed
	}
	return nil, "", ""
}

// recordStep folds a step event into the step's row: a new attempt
// starts it afresh, its outcome ends it.
func (f *fold) recordStep(ev *runbookv1.Event, t time.Time) {
	se, phase, status := stepEvent(ev)
	if se == nil {
		return
	}
	if f.stepRow == nil {
		f.stepRow = map[stepKey]int{}
	}
	k := keyOf(phase, se)
	i, ok := f.stepRow[k]
	if !ok {
		i = len(f.steps)
		f.stepRow[k] = i
		f.steps = append(f.steps, Step{Phase: phase, List: se.GetList(), Index: se.GetIndex()})
	}
	row := &f.steps[i]
	row.Name, row.Attempt, row.Status = se.GetName(), se.GetAttempt(), status
	if se.GetKind() != "" {
		row.Kind = se.GetKind()
	}
	if se.GetManual() {
		row.Manual, row.Status, row.Note = true, StepManual, plan.ManualNotExecuted
	}
	if status == StepRunning {
		row.Started, row.Ended, row.DurationMS, row.Error, row.ExitCode, row.OutputTail = t, time.Time{}, 0, "", 0, ""
		return
	}
	row.Ended, row.DurationMS, row.Error, row.ExitCode, row.OutputTail = t, se.GetDurationMs(), se.GetError(), se.GetExitCode(), se.GetOutputTail()
}
