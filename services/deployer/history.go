package deployer

import (
	"fmt"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/gate"
	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// stepKey names one step of one list ("steps", "health", "finally", "rollback").
type stepKey struct {
	list  string
	index int32
}

// runView is where a run stands, rebuilt from its own events: the run's
// fold (runstate: whether it was stopped before its deploy, whether the
// deploy started — by which event's handler — or finished, whether a
// rollback started or ended, run.failed, the gate's inputs) and, folded in
// the same loop, what only the deployer needs to continue after a crash
// without redoing finished work: its step attempts, the approvals as the
// keyring judges them, the run's backup directory.
type runView struct {
	*runstate.State
	// backupDir is the run's own backup directory (its latest backup.done:
	// pre-flight's, or a backup step's), "" when it has none yet.
	backupDir string
	// reverts: the run is a revert (plan.Reverts); revertedBackup is the
	// reverted run's backup directory then ("" when it has none), what
	// its restore steps and commands read (stepBackupDir).
	reverts        bool
	revertedBackup string
	decisions      []gate.Decision // approvals and rejections, in stream order
	// published are the ids of events this pass published (judge), on
	// top of those folded (State.Seen).
	published map[string]bool
	started   map[stepKey]int32 // attempts started
	ended     map[stepKey]int32 // attempts that ended (succeeded or failed)
	succeeded map[stepKey]bool
	// lastStart is the started event of each step's latest attempt.
	lastStart map[stepKey]*runbookv1.StepEvent
	// cut counts the attempts of a step recorded as interrupted (their
	// deployer stopped before their outcome: interruptedPrefix); cutLast
	// says whether the latest attempt that ended was one.
	cut     map[stepKey]int32
	cutLast map[stepKey]bool
}

// viewOf folds a run's history. With a keyring, approvals count only when
// their signature verifies (the gate records the refused ones); a
// rejection or a cancel stops the run whatever its signature, as the
// run's fold (runstate) has it: stopping is always safe, and audit verify
// names an unsigned one.
func viewOf(run string, hist []eventbus.Envelope, kr *trust.Keyring) *runView {
	v := &runView{State: runstate.New(run), published: map[string]bool{},
		started: map[stepKey]int32{}, ended: map[stepKey]int32{}, succeeded: map[stepKey]bool{},
		lastStart: map[stepKey]*runbookv1.StepEvent{}, cut: map[stepKey]int32{}, cutLast: map[stepKey]bool{}}
	for _, e := range hist {
		ev := e.Event
		if !v.ApplyAt(e.Seq, ev) {
			continue // an event id already folded
		}
		if d, isDecision := gate.Verified(kr, ev, v.PlanSHA256); isDecision {
			v.decisions = append(v.decisions, d)
		}
		switch p := ev.Payload.(type) {
		case *runbookv1.Event_BackupDone:
			v.backupDir = p.BackupDone.GetDir()
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

// stepBackupDir is step st's RUNBOOK_BACKUP_DIR, the directory restore
// steps read: the run's own backup directory; for a revert run, the
// reverted run's — except for a backup step, whose backup goes into the
// revert run's own directory (a revert never writes into the backup it
// restores from).
func (v *runView) stepBackupDir(st plan.Step) string {
	if v.reverts && st.Backup == nil {
		return v.revertedBackup
	}
	return v.backupDir
}

// known reports whether the event with this id is in the run already.
func (v *runView) known(id string) bool { return v.Seen(id) || v.published[id] }

func (v *runView) stepStarted(s *runbookv1.StepEvent) {
	k := stepKey{s.GetList(), s.GetIndex()}
	if s.GetAttempt() > v.started[k] {
		v.started[k] = s.GetAttempt()
		v.lastStart[k] = s
	}
}

func (v *runView) stepEnded(s *runbookv1.StepEvent, ok bool) {
	k := stepKey{s.GetList(), s.GetIndex()}
	cut := !ok && strings.HasPrefix(s.GetError(), interruptedPrefix)
	if s.GetAttempt() >= v.ended[k] {
		v.ended[k] = s.GetAttempt()
		v.cutLast[k] = cut
	}
	if cut {
		v.cut[k]++
	}
	if ok {
		v.succeeded[k] = true
	}
}

// dangling reports whether step k's latest attempt started and never
// ended: the deployer running it stopped.
func (v *runView) dangling(k stepKey) bool { return v.started[k] > v.ended[k] }

// phaseOf is the phase of a step list: rollback's, or the deploy's
// (steps, health, finally).
func phaseOf(list string) string {
	if list == "rollback" {
		return "rollback"
	}
	return "deploy"
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

// DeployStartedAt is deploy.started's time (zero before it): it names a
// backup directory a backup step makes when pre-flight made none.
func (v *runView) DeployStartedAt() time.Time {
	if v.DeployStart == nil || v.DeployStart.GetTime() == nil {
		return time.Time{}
	}
	return v.DeployStart.GetTime().AsTime()
}
