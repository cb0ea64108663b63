package deployer

import (
	"fmt"
	"time"

	"github.com/kis-core/runbook/domain/gate"
	"github.com/kis-core/runbook/domain/trust"
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
	// backupDir is the run's own backup directory (its latest backup.done:
	// pre-flight's, or a backup step's), "" when it has none yet.
	backupDir       string
	approvalsNeeded []string
	readyAt         time.Time       // when pre-flight passed
	decisions       []gate.Decision // approvals and rejections, in stream order
	requesterKey    string          // the key that signed change.requested
	ids             map[string]bool // every event id of the run
	// stopped is the event type (approval.rejected, run.cancelled,
	// run.expired) that ended the run before its deploy started, if any:
	// in stream order, the first of a stop and deploy.started wins.
	stopped         string
	deployStarted   bool
	deployStartedBy string    // causation id of deploy.started: the event whose handler deploys
	deployStartedAt time.Time // deploy.started's time: names a backup directory a backup step makes
	deployFinished  bool
	rollbackStarted *runbookv1.Event
	rollbackEnded   bool
	started         map[stepKey]int32 // attempts started
	ended           map[stepKey]int32 // attempts that ended (succeeded or failed)
	succeeded       map[stepKey]bool

	// failed: run.failed, a failure nothing undid (no executable rollback
	// step): the run is over, no step of it runs any more.
	failed bool
}

// viewOf folds a run's history. With a keyring, approvals count only when
// their signature verifies (the gate records the refused ones); a
// rejection or a cancel stops the run whatever its signature, as every
// reader's fold does: stopping is always safe, and audit verify names an
// unsigned one.
func viewOf(hist []eventbus.Envelope, kr *trust.Keyring) *runView {
	v := &runView{ids: map[string]bool{}, started: map[stepKey]int32{}, ended: map[stepKey]int32{}, succeeded: map[stepKey]bool{}}
	planSHA := ""
	for _, e := range hist {
		ev := e.Event
		v.ids[ev.GetId()] = true
		d, isDecision := gate.Verified(kr, ev, planSHA)
		if isDecision {
			v.decisions = append(v.decisions, d)
		}
		switch p := ev.Payload.(type) {
		case *runbookv1.Event_ChangeRequested:
			if planSHA == "" {
				planSHA = p.ChangeRequested.GetPlanSha256()
				if s := ev.GetSignature(); s != nil {
					v.requesterKey = s.GetKey()
				}
			}
		case *runbookv1.Event_PreflightPassed:
			if !v.preflightPassed && ev.GetTime() != nil {
				v.readyAt = ev.GetTime().AsTime()
			}
			v.preflightPassed = true
		case *runbookv1.Event_BackupDone:
			v.backupDir = p.BackupDone.GetDir()
		case *runbookv1.Event_PlanAssessed:
			v.approvalsNeeded = p.PlanAssessed.GetApprovalsRequired()
		case *runbookv1.Event_ApprovalRejected, *runbookv1.Event_RunCancelled, *runbookv1.Event_RunExpired:
			if !v.deployStarted && v.stopped == "" {
				v.stopped = ev.GetType()
			}
		case *runbookv1.Event_DeployStarted:
			if !v.deployStarted {
				v.deployStartedBy = ev.GetCausationId()
				if ev.GetTime() != nil {
					v.deployStartedAt = ev.GetTime().AsTime()
				}
			}
			v.deployStarted = true
		case *runbookv1.Event_DeployDone, *runbookv1.Event_DeployFailed:
			v.deployFinished = true
		case *runbookv1.Event_RollbackStarted:
			v.rollbackStarted = ev
		case *runbookv1.Event_RollbackDone, *runbookv1.Event_RollbackFailed:
			v.rollbackEnded = true
		case *runbookv1.Event_RunFailed:
			v.failed = true
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
