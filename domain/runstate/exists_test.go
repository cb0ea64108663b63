package runstate

import (
	"strings"
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

func exhausted(id, consumer, typ string, original, deliveries uint64) *runbookv1.Event {
	return &runbookv1.Event{Id: id, RunId: "R", Type: "event.dead_lettered", Payload: &runbookv1.Event_EventDeadLettered{
		EventDeadLettered: &runbookv1.DeadLettered{Consumer: consumer, OriginalSequence: original, OriginalSubject: "runbook.R." + typ,
			Deliveries: deliveries, Reason: "no outcome", Exhausted: true}}}
}

func deployStartedEv(id string) *runbookv1.Event {
	return &runbookv1.Event{Id: id, RunId: "R", Type: "deploy.started", Payload: &runbookv1.Event_DeployStarted{
		DeployStarted: &runbookv1.DeployStarted{}}}
}

// A message a consumer accepted and gave up on when its deliveries ran
// out (exhausted) fails the run it belongs to, naming the event and the
// consumer; it keeps the run in existence; a refused message's dead letter
// fails nothing; an exhausted dead letter makes no run by itself, and
// changes no run that already ended.
func TestExhaustedDeadLetterFailsTheRun(t *testing.T) {
	t.Parallel()
	s := New("R")
	s.ApplyAt(1, changeRequested("cr"))
	s.ApplyAt(2, preflightStarted("ps"))
	s.ApplyAt(3, deployStartedEv("ds"))
	s.ApplyAt(4, deadLetter("dl-forged", 2)) // a refused message: nothing fails
	if s.Status != Deploying || s.DeadLetter != nil {
		t.Fatalf("a refused message's dead letter changed the run: %s, %v", s.Status, s.DeadLetter)
	}
	s.ApplyAt(5, exhausted("dl-mon", "monitor", "deploy.started", 3, 5))
	if s.Status != Failed || s.DeadLetter.GetId() != "dl-mon" || !s.Exists() {
		t.Fatalf("status %s, dead letter %v, exists %v; want FAILED by dl-mon", s.Status, s.DeadLetter, s.Exists())
	}
	want := "event.dead_lettered: deploy.started (stream sequence 3) was never handled: the monitor consumer gave up after 5 deliveries: no outcome"
	if s.FinalReason != want {
		t.Fatalf("reason %q\nwant   %q", s.FinalReason, want)
	}

	// Only dead letters: no run, whatever they say.
	s = New("R")
	s.ApplyAt(7, exhausted("dl", "deployer", "deploy.started", 6, 5))
	if s.Exists() || s.Status != "" || s.DeadLetter != nil {
		t.Fatalf("an exhausted dead letter alone made a run: exists %v, status %q", s.Exists(), s.Status)
	}

	// A run that already ended keeps its status.
	s = Fold("R", []*runbookv1.Event{changeRequested("cr"),
		{Id: "pf", RunId: "R", Type: "preflight.failed", Payload: &runbookv1.Event_PreflightFailed{PreflightFailed: &runbookv1.PreflightResult{Reason: "db down"}}},
		exhausted("dl", "notifier", "report.ready", 9, 5)})
	if s.Status != Failed || s.FinalReason != "pre-flight failed: db down" {
		t.Fatalf("final run changed by a later dead letter: %s %q", s.Status, s.FinalReason)
	}
}

// An interrupted deploy's deploy.failed says what became of its run.
func TestDeployInterruptedReason(t *testing.T) {
	t.Parallel()
	ev := func(id, typ string, p any) *runbookv1.Event {
		e := &runbookv1.Event{Id: id, RunId: "R", Type: typ}
		switch p := p.(type) {
		case *runbookv1.Event_RollbackStarted:
			e.Payload = p
		case *runbookv1.Event_RollbackDone:
			e.Payload = p
		case *runbookv1.Event_RollbackFailed:
			e.Payload = p
		}
		return e
	}
	base := []*runbookv1.Event{changeRequested("cr"), deployStartedEv("ds")}
	rs := ev("rs", "rollback.started", &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{Reason: "p95"}})
	for _, c := range []struct {
		more []*runbookv1.Event
		want string
	}{
		{[]*runbookv1.Event{rs, ev("rd", "rollback.done", &runbookv1.Event_RollbackDone{RollbackDone: &runbookv1.DeployFinished{}})}, "interrupted; rolled back"},
		{[]*runbookv1.Event{rs, ev("rf", "rollback.failed", &runbookv1.Event_RollbackFailed{RollbackFailed: &runbookv1.DeployFinished{}})}, "interrupted; the rollback failed"},
		{[]*runbookv1.Event{rs}, "interrupted; rolling back"},
		{[]*runbookv1.Event{exhausted("dl", "monitor", "deploy.started", 2, 5)}, "interrupted; the run ended FAILED: event.dead_lettered: deploy.started"},
	} {
		got := Fold("R", append(append([]*runbookv1.Event{}, base...), c.more...)).DeployInterruptedReason()
		if !strings.HasPrefix(got, c.want) {
			t.Errorf("got %q, want %q…", got, c.want)
		}
	}
}
