package runstate

import "fmt"

// RevertRefusal says why run s may not be reverted (`runbook revert`, and
// pre-flight of the revert run), or nil when it may: it ended SUCCESS and
// no other revert of it deployed or is under way. others are the folds of
// the runs its revert.requested name (RevertRequests), the asking run
// left out. One sentence per case, naming what to do instead.
func (s *State) RevertRefusal(others []*State) error {
	run := s.RunID
	switch {
	case !s.Exists():
		return fmt.Errorf("no run %s: only a run that ended SUCCESS can be reverted", run)
	case !s.Status.Final() && !s.DeployStarted():
		return fmt.Errorf("run %s is still %s and has changed nothing yet: stop it with `runbook cancel %s`", run, s.Status, run)
	case !s.Status.Final():
		return fmt.Errorf("run %s is still %s: undo it with `runbook rollback %s --reason ...`", run, s.Status, run)
	case s.Status == RolledBack:
		return fmt.Errorf("run %s already ended ROLLED_BACK: its rollback already undid the change; nothing to revert", run)
	case s.Status == RollbackFailed:
		return fmt.Errorf("run %s ended ROLLBACK_FAILED: its rollback steps already ran and failed, production is in an unknown state; repair it by hand from its report (`runbook report %s`)", run, run)
	case s.Status == Failed && s.DeployStarted():
		return fmt.Errorf("run %s ended FAILED (%s): only a change that ended SUCCESS is reverted; what it left is the operator's to-do in its report (`runbook report %s`)", run, s.FinalReason, run)
	case s.Status != Success:
		return fmt.Errorf("run %s ended %s before its deploy: nothing was changed, nothing to revert", run, s.Status)
	}
	for _, o := range others {
		switch {
		case !o.Status.Final():
			return fmt.Errorf("run %s is already being reverted by run %s (%s): follow it with `runbook watch %s`", run, o.RunID, o.Status, o.RunID)
		case o.Status == Success:
			return fmt.Errorf("run %s was already reverted by run %s (SUCCESS)", run, o.RunID)
		case o.DeployStarted():
			return fmt.Errorf("run %s was already reverted in part by run %s, which ended %s after its deploy started: finish by hand from both reports", run, o.RunID, o.Status)
		}
		// A revert that ended before its deploy changed nothing.
	}
	return nil
}

// RevertedBy are the runs that revert this one (its revert.requested, in
// stream order, each once).
func (s *State) RevertedBy() []string {
	var out []string
	seen := map[string]bool{}
	for _, e := range s.RevertRequests {
		if by := e.GetRevertRequested().GetByRun(); by != "" && !seen[by] {
			seen[by] = true
			out = append(out, by)
		}
	}
	return out
}
