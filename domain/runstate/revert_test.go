package runstate

import (
	"strings"
	"testing"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

func foldOf(run string, bs ...builder) *State {
	s := New(run)
	for i, b := range bs {
		ev := b(i)
		ev.RunId = run
		s.Apply(ev)
	}
	return s
}

// Only a run that ended SUCCESS, not reverted yet, can be reverted; every
// other case says why, and what to do instead.
func TestRevertRefusal(t *testing.T) {
	t.Parallel()
	success := []builder{cr, pfStarted, pfPassed, deployStarted, deployDone, monitorCompleted, testPassed}
	revertOf := func(by string) builder {
		return func(n int) *runbookv1.Event {
			return mk("rv/"+by, "revert.requested", &runbookv1.Event_RevertRequested{RevertRequested: &runbookv1.RevertRequested{ByRun: by}}, n)
		}
	}
	cases := []struct {
		name   string
		run    *State
		others []*State
		want   string // "" = may be reverted
	}{
		{"success", foldOf("R", success...), nil, ""},
		{"no such run", New("R"), nil, "no run R: only a run that ended SUCCESS can be reverted"},
		{"awaiting approval", foldOf("R", cr, pfStarted, assessed, pfPassed, waiting), nil, "run R is still AWAITING_APPROVAL and has changed nothing yet: stop it with `runbook cancel R`"},
		{"deploying", foldOf("R", cr, pfStarted, pfPassed, deployStarted), nil, "run R is still DEPLOYING: undo it with `runbook rollback R --reason ...`"},
		{"rolled back", foldOf("R", cr, pfStarted, pfPassed, deployStarted, deployDone, requested("monitor"), rbStarted("monitor"), rbDone), nil, "run R already ended ROLLED_BACK: its rollback already undid the change; nothing to revert"},
		{"rollback failed", foldOf("R", cr, pfStarted, pfPassed, deployStarted, deployFailed, rbStarted("deployer"), rbFailed), nil, "run R ended ROLLBACK_FAILED: its rollback steps already ran and failed"},
		{"failed, nothing undone", foldOf("R", cr, pfStarted, pfPassed, deployStarted, deployFailed, runFailed), nil, "run R ended FAILED ("},
		{"rejected", foldOf("R", cr, pfStarted, assessed, pfPassed, waiting, rejected), nil, "run R ended REJECTED before its deploy: nothing was changed, nothing to revert"},
		{"cancelled", foldOf("R", cr, cancelled), nil, "run R ended CANCELLED before its deploy"},
		{"a revert under way", foldOf("R", append(success, revertOf("R2"))...), []*State{foldOf("R2", cr, pfStarted, assessed, pfPassed, waiting)}, "run R is already being reverted by run R2 (AWAITING_APPROVAL): follow it with `runbook watch R2`"},
		{"reverted", foldOf("R", append(success, revertOf("R2"))...), []*State{foldOf("R2", success...)}, "run R was already reverted by run R2 (SUCCESS)"},
		{"reverted in part", foldOf("R", append(success, revertOf("R2"))...), []*State{foldOf("R2", cr, pfStarted, pfPassed, deployStarted, deployFailed, runFailed)}, "run R was already reverted in part by run R2, which ended FAILED after its deploy started"},
		{"an earlier revert rejected", foldOf("R", append(success, revertOf("R2"))...), []*State{foldOf("R2", cr, pfStarted, assessed, pfPassed, waiting, rejected)}, ""},
	}
	for _, c := range cases {
		err := c.run.RevertRefusal(c.others)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.HasPrefix(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// revert.requested changes nothing of the run's status; RevertedBy
	// names each reverting run once.
	s := foldOf("R", append(success, revertOf("R2"), revertOf("R3"))...)
	if s.Status != Success || strings.Join(s.RevertedBy(), ",") != "R2,R3" {
		t.Errorf("status %s, reverted by %v", s.Status, s.RevertedBy())
	}
}
