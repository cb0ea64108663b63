package runstate

import (
	"testing"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

func deadLetter(id string, original uint64) *runbookv1.Event {
	return &runbookv1.Event{Id: id, RunId: "R", Type: "event.dead_lettered", Payload: &runbookv1.Event_EventDeadLettered{
		EventDeadLettered: &runbookv1.DeadLettered{Consumer: "preflight", OriginalSequence: original, OriginalSubject: "runbook.R.change.requested"}}}
}

func changeRequested(id string) *runbookv1.Event {
	return &runbookv1.Event{Id: id, RunId: "R", Type: "change.requested", Payload: &runbookv1.Event_ChangeRequested{
		ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-1"}}}
}

func preflightStarted(id string) *runbookv1.Event {
	return &runbookv1.Event{Id: id, RunId: "R", Type: "preflight.started", Payload: &runbookv1.Event_PreflightStarted{
		PreflightStarted: &runbookv1.PreflightStarted{}}}
}

// A run exists once a valid event of it is folded, and only while a
// consumer has not dead-lettered every such event: dead letters of
// messages that never decoded make no run, and the dead letter of the
// run's only event (an unsigned change request) takes the run back.
func TestExists(t *testing.T) {
	t.Parallel()
	s := New("R")
	s.ApplyAt(3, deadLetter("dl-garbage", 2)) // the garbage at 2 never decoded
	if s.Exists() || s.Status != "" {
		t.Fatalf("dead letters of garbage make a run: exists %v, status %q", s.Exists(), s.Status)
	}
	s.ApplyAt(4, changeRequested("cr"))
	if !s.Exists() || s.Status != Submitted {
		t.Fatalf("a change request makes no run: exists %v, status %q", s.Exists(), s.Status)
	}
	s.ApplyAt(5, deadLetter("dl-cr-preflight", 4))
	s.ApplyAt(6, deadLetter("dl-cr-monitor", 4))
	if s.Exists() {
		t.Fatal("a change request every consumer refused still makes a run")
	}

	// A run its services acted on stays, whatever else is refused.
	s = New("R")
	s.ApplyAt(1, changeRequested("cr"))
	s.ApplyAt(2, preflightStarted("ps"))
	s.ApplyAt(3, deadLetter("dl-cr-monitor", 1))
	if !s.Exists() || s.Status != Preflight {
		t.Fatalf("exists %v, status %q; want a run in PREFLIGHT", s.Exists(), s.Status)
	}

	// Without sequences (a history folded with Apply) an event counts for good.
	if s := Fold("R", []*runbookv1.Event{changeRequested("cr"), deadLetter("dl", 1)}); !s.Exists() {
		t.Fatal("a history folded without sequences has no run")
	}
}
