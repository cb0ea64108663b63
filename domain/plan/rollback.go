package plan

import (
	"fmt"
	"strings"
)

// NothingUndone starts the reason of a run that failed with no executable
// rollback step (run.failed, status FAILED): no step of the plan could undo
// the change, so nothing was undone and someone has to act.
const NothingUndone = "no rollback steps: nothing was undone — manual action needed"

// ManualNotExecuted is how every reader (CLI watch, dashboard, report)
// shows a described (manual) step: runbook showed it and ran nothing; it
// is the operator's to-do.
const ManualNotExecuted = "manual — not executed"

// NoExecutableRollbackWarning is what validate says of a plan whose
// rollback_steps have no executable step (at rollback_plan.rollback_steps).
const NoExecutableRollbackWarning = "no executable step: a failure ends FAILED with nothing undone"

// HasExecutableStep reports whether a rollback of this plan would run
// anything: a step other than a described (manual) one.
func (r RollbackPlan) HasExecutableStep() bool {
	for _, s := range r.RollbackSteps {
		if s.Kind() != "" && !s.IsManual() {
			return true
		}
	}
	return false
}

// NothingUndoneOnFailure reports whether a failure of a run of p would
// leave its change in place: p has deploy steps (it changes something)
// and no executable rollback step. Such a run ends FAILED with
// NothingUndone instead of a rollback that runs nothing; validate warns
// about such a plan. A plan without deploy steps changes nothing, so
// there is nothing to undo.
func (p *Plan) NothingUndoneOnFailure() bool {
	return len(p.Deploy.Steps) > 0 && !p.RollbackPlan.HasExecutableStep()
}

// DescribedSteps are the texts of the described (manual) rollback steps,
// in the plan's order: what an operator must do by hand.
func (r RollbackPlan) DescribedSteps() []string {
	var out []string
	for _, s := range r.RollbackSteps {
		if s.IsManual() {
			out = append(out, s.Text)
		}
	}
	return out
}

// NothingUndoneReason is the reason of run.failed for a run whose rollback
// was asked for (why) when the plan has no executable rollback step: it
// starts with NothingUndone, says why the rollback was asked for, and lists
// the plan's described steps as the operator's to-do.
func NothingUndoneReason(why string, described []string) string {
	var b strings.Builder
	b.WriteString(NothingUndone)
	if why = strings.TrimSpace(why); why != "" {
		b.WriteString("; rollback requested: ")
		b.WriteString(why)
	}
	if len(described) > 0 {
		b.WriteString("; to do by hand (the plan's described rollback steps):")
		for i, s := range described {
			fmt.Fprintf(&b, " %d. %s", i+1, s)
		}
	}
	return b.String()
}
