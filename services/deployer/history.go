package deployer

import (
	"fmt"

	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// stepKey names one step of one list ("steps", "health", "finally", "rollback").
type stepKey struct {
	list  string
	index int32
}

// runView is where a run stands, rebuilt from its own events: what the
// deployer needs to continue after a crash without redoing finished work.
type runView struct {
	preflightPassed bool
	approvalsNeeded []string
	approved        map[string]bool
	deployStarted   bool
	deployFinished  bool
	rollbackStarted *runbookv1.Event
	rollbackEnded   bool
	started         map[stepKey]int32 // attempts started
	ended           map[stepKey]int32 // attempts that ended (succeeded or failed)
	succeeded       map[stepKey]bool
}

func viewOf(hist []eventbus.Envelope) *runView {
	v := &runView{approved: map[string]bool{}, started: map[stepKey]int32{}, ended: map[stepKey]int32{}, succeeded: map[stepKey]bool{}}
	for _, e := range hist {
		ev := e.Event
		switch p := ev.Payload.(type) {
		case *runbookv1.Event_PreflightPassed:
			v.preflightPassed = true
		case *runbookv1.Event_PlanAssessed:
			v.approvalsNeeded = p.PlanAssessed.GetApprovalsRequired()
		case *runbookv1.Event_ApprovalGranted:
			v.approved[p.ApprovalGranted.GetRole()] = true
		case *runbookv1.Event_DeployStarted:
			v.deployStarted = true
		case *runbookv1.Event_DeployDone, *runbookv1.Event_DeployFailed:
			v.deployFinished = true
		case *runbookv1.Event_RollbackStarted:
			v.rollbackStarted = ev
		case *runbookv1.Event_RollbackDone, *runbookv1.Event_RollbackFailed:
			v.rollbackEnded = true
		case *runbookv1.Event_DeployStepStarted:
			v.stepStarted(p.DeployStepStarted)
		case *runbookv1.Event_RollbackStepStarted:
			v.stepStarted(p.RollbackStepStarted)
		case *runbookv1.Event_DeployStepSucceeded:
			v.stepEnded(p.DeployStepSucceeded, true)
		case *runbookv1.Event_RollbackStepSucceeded:
			v.stepEnded(p.RollbackStepSucceeded, true)
		case *runbookv1.Event_DeployStepFailed:
			v.stepEnded(p.DeployStepFailed, false)
		case *runbookv1.Event_RollbackStepFailed:
			v.stepEnded(p.RollbackStepFailed, false)
		}
	}
	return v
}

func (v *runView) stepStarted(s *runbookv1.StepEvent) {
	k := stepKey{s.GetList(), s.GetIndex()}
	if s.GetAttempt() > v.started[k] {
		v.started[k] = s.GetAttempt()
	}
}

func (v *runView) stepEnded(s *runbookv1.StepEvent, ok bool) {
	k := stepKey{s.GetList(), s.GetIndex()}
	if s.GetAttempt() > v.ended[k] {
		v.ended[k] = s.GetAttempt()
	}
	if ok {
		v.succeeded[k] = true
	}
}

// missingApprovals lists the roles that must still approve.
func (v *runView) missingApprovals() []string {
	var out []string
	for _, r := range v.approvalsNeeded {
		if !v.approved[r] {
			out = append(out, r)
		}
	}
	return out
}

// stepEvent wraps a StepEvent in the payload of the given phase
// ("deploy" or "rollback") and outcome ("started", "succeeded", "failed").
func stepEvent(runID, phase, outcome string, s *runbookv1.StepEvent) *runbookv1.Event {
	var payload any
	switch phase + "." + outcome {
	case "deploy.started":
		payload = &runbookv1.Event_DeployStepStarted{DeployStepStarted: s}
	case "deploy.succeeded":
		payload = &runbookv1.Event_DeployStepSucceeded{DeployStepSucceeded: s}
	case "deploy.failed":
		payload = &runbookv1.Event_DeployStepFailed{DeployStepFailed: s}
	case "rollback.started":
		payload = &runbookv1.Event_RollbackStepStarted{RollbackStepStarted: s}
	case "rollback.succeeded":
		payload = &runbookv1.Event_RollbackStepSucceeded{RollbackStepSucceeded: s}
	case "rollback.failed":
		payload = &runbookv1.Event_RollbackStepFailed{RollbackStepFailed: s}
	default:
		panic(fmt.Sprintf("stepEvent: %s.%s", phase, outcome))
	}
	return eventbus.New(runID, payload, s.GetList(), s.GetIndex(), fmt.Sprintf("attempt-%d", s.GetAttempt()))
}
