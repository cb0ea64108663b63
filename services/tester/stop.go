package tester

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/tester/httprun"
)

// StatusStopped is the tests counter's status of a load test stopped by the
// run's rollback (runbook_tester_tests_total{type="load",status="STOPPED"}).
const StatusStopped = "STOPPED"

// stopError is why a test phase stopped before it finished: the run's
// rollback began (a rollback.requested or rollback.started of another
// service). It is the cause of the test context's cancellation.
type stopError struct {
	by, reason string
}

func (e *stopError) Error() string {
	msg := "rollback started"
	if e.by != "" {
		msg += " by " + e.by
	}
	if e.reason != "" {
		msg += ": " + e.reason
	}
	return msg
}

func (e *stopError) Is(target error) bool { return target == errRollbackStarted }

// stopOf is the stop an event of the run means, or nil: a rollback asked
// for, or started, by anyone but the tester itself (its own request comes
// after its tests, with their outcome).
func stopOf(ev *runbookv1.Event) *stopError {
	switch p := ev.Payload.(type) {
	case *runbookv1.Event_RollbackRequested:
		if by := p.RollbackRequested.GetRequestedBy(); by != "tester" {
			return &stopError{by: by, reason: p.RollbackRequested.GetReason()}
		}
	case *runbookv1.Event_RollbackStarted:
		if by := p.RollbackStarted.GetRequestedBy(); by != "tester" {
			return &stopError{by: by, reason: p.RollbackStarted.GetReason()}
		}
	}
	return nil
}

// stopIn is the first stop in a run's fold, or nil: a rollback asked for
// (in stream order), else started, by anyone but the tester.
func stopIn(run *runstate.State) *stopError {
	for _, r := range run.RollbackRequests {
		if st := stopOf(r); st != nil {
			return st
		}
	}
	if rs := run.RollbackStart; rs != nil {
		return stopOf(rs)
	}
	return nil
}

// stopped is the stop that cancelled ctx, or nil (not cancelled, or
// cancelled for another reason such as a shutdown).
func stopped(ctx context.Context) *stopError {
	var st *stopError
	if errors.As(context.Cause(ctx), &st) {
		return st
	}
	return nil
}

// watchRollback follows the run's rollback.requested and rollback.started
// from stream sequence from on, and cancels the returned context with a
// *stopError as soon as one means the release under test is going away. A
// follower (not a poll) so that a long load test stops within moments of the
// rollback's request, before the deployer has restored the old release.
// stop ends the watch and waits for it.
func (s *Service) watchRollback(ctx context.Context, run string, from uint64, log *slog.Logger) (tctx context.Context, stop func()) {
	tctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	filters := []string{eventbus.Subject(run, "rollback.requested"), eventbus.Subject(run, "rollback.started")}
	go func() {
		defer close(done)
		next := from
		for tctx.Err() == nil {
			err := s.bus.Follow(tctx, filters, next, func(e eventbus.Envelope) error {
				next = e.Seq + 1
				if st := stopOf(e.Event); st != nil {
					log.Warn("stopping the tests: the run's rollback began", "by", st.by, "reason", st.reason)
					cancel(st)
					return eventbus.StopFollow()
				}
				return nil
			})
			if err == nil || tctx.Err() != nil {
				return
			}
			log.Warn("following the run for its rollback failed; following again", "err", err)
			t := time.NewTimer(time.Second)
			select {
			case <-tctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}()
	return tctx, func() {
		cancel(nil)
		<-done
	}
}

// partialLoad is the load test's result up to the stop: what it measured
// (requests cut by the stop are not counted), with its gates not judged.
func partialLoad(res *runbookv1.LoadResult, rep httprun.LoadReport, st *stopError) *runbookv1.LoadResult {
	fillLoadResult(res, rep)
	res.LatencySamplesMs = nil // not a regression baseline: only passed load tests are
	res.Reason = fmt.Sprintf("stopped after %s, gates not judged: %s", rep.Elapsed.Round(100*time.Millisecond), st)
	return res
}

// finishStopped ends a test phase the run's rollback stopped with one
// test.failed: reason "stopped: <why>", Stopped set, and what was measured
// before the stop — the smoke cases that completed when the suite had not
// been published yet, and the load test up to its last progress point. It
// asks for no rollback (one is under way) and is published on ctx, not on
// the cancelled test context.
func (s *Service) finishStopped(ctx context.Context, cause *runbookv1.Event, st *stopError, v verdict, smoke *runbookv1.TestSuiteResult, notRun int32, load *runbookv1.LoadResult, log *slog.Logger) error {
	if smoke != nil {
		v.passed += smoke.GetPassed()
		v.failed += smoke.GetFailed()
	}
	out := &runbookv1.TestOutcome{Passed: v.passed, Failed: v.failed, Reason: "stopped: " + st.Error(), Stopped: st.Error(),
		Smoke: smoke, SmokeNotRun: notRun, Load: load}
	ev := eventbus.CausedBy(eventbus.New(cause.GetRunId(), &runbookv1.Event_TestFailed{TestFailed: out}), cause)
	if err := s.publishOnce(ctx, ev); err != nil {
		return fmt.Errorf("publish the stopped outcome of run %s: %w", cause.GetRunId(), err)
	}
	if load != nil {
		s.m.tests.WithLabelValues("load", StatusStopped).Inc()
	}
	log.Info("test phase stopped", "outcome", ev.GetType(), "passed", v.passed, "failed", v.failed, "smoke_not_run", notRun,
		"load_stopped", load != nil, "reason", out.GetReason())
	return nil
}

// recorded is the verdict of the suites already published in a run's
// history (a redelivery after the rollback began).
func recorded(h history) verdict {
	var v verdict
	if prev := h.first("test.smoke.failed", "test.smoke.passed"); prev != nil {
		r := prev.GetTestSmokeFailed()
		if r == nil {
			r = prev.GetTestSmokePassed()
		}
		v.passed, v.failed = r.GetPassed(), r.GetFailed()
	}
	if h.byType["test.load.failed"] != nil {
		v.failed++
	} else if h.byType["test.load.passed"] != nil {
		v.passed++
	}
	return v
}
