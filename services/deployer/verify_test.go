package deployer_test

import (
	"context"
	"slices"
	"testing"
)

// rollback.started carries rollback_plan.verify (the tester re-runs those
// suites after rollback.done), except for a run that never deployed: its
// rollback changes nothing, so there is nothing to verify.
func TestRollbackStartedCarriesVerify(t *testing.T) {
	t.Parallel()
	h := start(t)
	p := planWith(h.log, step("one", "")+"    - name: broken\n      command: {argv: [\"false\"]}\n", step("undo", "")+"  verify: [critical_paths]\n") +
		"test:\n  suites:\n    - name: critical_paths\n      steps: [{name: health, request: {url: 'http://127.0.0.1:9/health'}}]\n"
	h.publish(t, changeRequested("V1", p), preflightPassed("V1"))
	h.waitFor(t, "V1", "rollback.done")
	rs, _ := h.bus.LastEvent(context.Background(), "V1", "rollback.started")
	if v := rs.Event.GetRollbackStarted().GetVerify(); !slices.Equal(v, []string{"critical_paths"}) {
		t.Fatalf("rollback.started verify %q, want [critical_paths]", v)
	}

	h.publish(t, changeRequested("V2", p), rollbackRequested("V2", "operator"))
	h.waitFor(t, "V2", "rollback.done")
	rs, _ = h.bus.LastEvent(context.Background(), "V2", "rollback.started")
	if v := rs.Event.GetRollbackStarted().GetVerify(); len(v) != 0 {
		t.Fatalf("rollback.started of a run that never deployed: verify %q", v)
	}
}
