package deployer_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/deployer"
)

// stepStatuses is each step's status as its latest event in stream order
// says (services/reporter/report derives the read API's steps the same
// way): "started", "succeeded" or "failed", by "<phase>/<list>/<index>".
func stepStatuses(t *testing.T, bus *eventbus.Bus, run string) map[string]string {
	t.Helper()
	hist, err := bus.RunHistory(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range hist {
		typ := e.Event.GetType()
		se, ok := eventbus.Payload(e.Event).(*runbookv1.StepEvent)
		if !ok || typ == "deploy.step.output" {
			continue
		}
		phase, outcome, _ := strings.Cut(typ, ".step.")
		out[fmt.Sprintf("%s/%s/%d", phase, se.GetList(), se.GetIndex())] = outcome
	}
	return out
}

// A deployer dies mid-step (a test-injected crash right after the step's
// started event); the run is rolled back before the deploy's message
// comes back (the redelivery is held until rollback.done). The redelivered
// deploy must not be acked in silence: the interrupted attempt gets its
// failed event, saying its deployer stopped, and deploy.failed says
// "interrupted; rolled back" — no step stays RUNNING, and the run stays
// ROLLED_BACK.
func TestRedeliveredDeployAfterRollbackEndsItsJournal(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	log := filepath.Join(t.TempDir(), "ran.log")
	var crashed atomic.Bool
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // never leave the redelivery blocked
	var deliveries atomic.Int32
	o := deployer.Options{
		StateDir:          t.TempDir(),
		DeployOutcomeWait: 300 * time.Millisecond,
		Consumer: eventbus.ConsumerOptions{Backoff: []time.Duration{20 * time.Millisecond},
			Fault: func(ev *runbookv1.Event) error {
				// The redelivery of the deploy's message waits until the
				// test lets it: its deployer is "down".
				if ev.GetType() == "preflight.passed" && deliveries.Add(1) > 1 {
					<-release
				}
				return nil
			}},
		StepStartFault: func(run, list string, index int) error {
			if list == "steps" && index == 1 && crashed.CompareAndSwap(false, true) {
				return errors.New("killed mid-step")
			}
			return nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc := deployer.New(natstest.Bus(t, s, "deployer"), o, testLog(t), nil, nil)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	h := &harness{bus: bus, log: log}

	run := "INT1"
	p := planWith(log, step("one", "")+step("two", ""), step("undo", ""))
	h.publish(t, changeRequested(run, p), preflightPassed(run))
	natstest.Eventually(t, 15*time.Second, "the crash mid-step and its redelivery", func() bool {
		return crashed.Load() && deliveries.Load() > 1
	})
	h.publish(t, rollbackRequested(run, "monitor"))
	h.waitFor(t, run, "rollback.done")
	// No deployer ended the deploy (its message waits for redelivery): the
	// rollback ended its journal itself before its first step — a rollback
	// step never runs before the deploy's outcome is in the stream.
	hist, _ := bus.RunHistory(context.Background(), run)
	failedAt, firstRollbackStep := -1, -1
	for i, e := range hist {
		switch e.Event.GetType() {
		case "deploy.failed":
			failedAt = i
		case "rollback.step.started":
			if firstRollbackStep < 0 {
				firstRollbackStep = i
			}
		}
	}
	if failedAt < 0 || firstRollbackStep < failedAt {
		t.Fatalf("deploy.failed at %d, first rollback step at %d: the deploy's outcome must come first", failedAt, firstRollbackStep)
	}
	f, _ := bus.LastEvent(context.Background(), run, "deploy.failed")
	if d := f.Event.GetDeployFailed(); d.GetError() != "interrupted; rolling back" || d.GetFailedStep() != "two" || d.GetStepsSucceeded() != 1 {
		t.Errorf("deploy.failed: %+v; want \"interrupted; rolling back\" at step two, 1 step done", d)
	}
	sf, _ := bus.LastEvent(context.Background(), run, "deploy.step.failed")
	if se := sf.Event.GetDeployStepFailed(); se.GetIndex() != 1 || se.GetAttempt() != 1 || se.GetName() != "two" ||
		!strings.HasPrefix(se.GetError(), "attempt interrupted: the deployer running it stopped") {
		t.Errorf("deploy.step.failed: %+v; want attempt 1 of step two, interrupted", se)
	}

	releaseOnce.Do(func() { close(release) }) // the deploy's message comes back: its journal has ended
	natstest.Eventually(t, 10*time.Second, "consumer caught up", func() bool {
		c, err := bus.JetStream().Consumer(context.Background(), eventbus.AuditStream, deployer.Durable)
		if err != nil {
			return false
		}
		ci, err := c.Info(context.Background())
		return err == nil && ci.NumPending == 0 && ci.NumAckPending == 0
	})
	for k, st := range stepStatuses(t, bus, run) {
		if st == "started" {
			t.Errorf("step %s still RUNNING", k)
		}
	}
	if n := h.count(t, run, "deploy.failed"); n != 1 {
		t.Errorf("deploy.failed %d times, want 1", n)
	}
	if got := strings.Join(h.ran(t), ","); got != "one,undo" {
		t.Errorf("ran %s; want one,undo: the interrupted step is not re-run after the rollback", got)
	}
	hist, _ = bus.RunHistory(context.Background(), run)
	evs := make([]*runbookv1.Event, 0, len(hist))
	for _, e := range hist {
		evs = append(evs, e.Event)
	}
	if st := runstate.Fold(run, evs); st.Status != runstate.RolledBack {
		t.Errorf("status %s (%s); want ROLLED_BACK", st.Status, st.FinalReason)
	}
}

// A deployer that dies mid-step and comes back (no rollback meanwhile)
// records the interrupted attempt before deciding: a step that is not
// idempotent fails the deploy (and is rolled back); an idempotent one is
// re-run, the interruption not counted against its retries.
func TestInterruptedAttemptIsRecordedOnResume(t *testing.T) {
	t.Parallel()
	for _, idem := range []bool{true, false} {
		t.Run(fmt.Sprintf("idempotent=%v", idem), func(t *testing.T) {
			t.Parallel()
			var crashed atomic.Bool
			h := startWith(t, deployer.Options{StateDir: t.TempDir(), StepStartFault: func(run, list string, index int) error {
				if list == "steps" && index == 1 && crashed.CompareAndSwap(false, true) {
					return errors.New("killed mid-step")
				}
				return nil
			}})
			run := fmt.Sprintf("INT2-%v", idem)
			extra := ""
			if idem {
				extra = "      idempotent: true\n"
			}
			h.publish(t, changeRequested(run, planWith(h.log, step("one", "")+step("two", extra), step("undo", ""))), preflightPassed(run))
			want, ran := "rollback.done", "one,undo"
			if idem {
				want, ran = "deploy.done", "one,two"
			}
			h.waitFor(t, run, want)
			if got := strings.Join(h.ran(t), ","); got != ran {
				t.Fatalf("ran %s, want %s", got, ran)
			}
			hist, _ := h.bus.RunHistory(context.Background(), run)
			var attempts []string
			for _, e := range hist {
				if se, ok := eventbus.Payload(e.Event).(*runbookv1.StepEvent); ok && se.GetList() == "steps" && se.GetIndex() == 1 {
					attempts = append(attempts, fmt.Sprintf("%s#%d", e.Event.GetType(), se.GetAttempt()))
					if e.Event.GetType() == "deploy.step.failed" && se.GetAttempt() == 1 && !strings.HasPrefix(se.GetError(), "attempt interrupted: ") {
						t.Errorf("attempt 1 failed with %q; want it recorded as interrupted", se.GetError())
					}
				}
			}
			wantAttempts := "deploy.step.started#1,deploy.step.failed#1"
			if idem {
				wantAttempts += ",deploy.step.started#2,deploy.step.succeeded#2"
			}
			if strings.Join(attempts, ",") != wantAttempts {
				t.Errorf("step two's events %v; want %s", attempts, wantAttempts)
			}
			for k, st := range stepStatuses(t, h.bus, run) {
				if st == "started" {
					t.Errorf("step %s still RUNNING", k)
				}
			}
		})
	}
}
