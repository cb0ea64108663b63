package tester

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/runplan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/tester/httprun"
)

// errVerifying: this tester is already verifying the run's rollback (a
// second rollback.done while the first is handled); the message comes back
// later, when the outcome is in the history.
var errVerifying = errors.New("the rollback's verification is already running here")

// onRollbackDone verifies a rollback (rollback_plan.verify, the seed's
// rollback step "테스트 실행"): once the deployer's steps are done it re-runs
// the smoke suites rollback.started names — the same runner as the
// deploy's smoke tests, with its secrets, redaction and captures; the load
// test is not re-run — and publishes rollback.verified when every test
// passed, else rollback.verify.failed with the test cases. Exactly once per
// run: a rollback.done handled again after an outcome exists does nothing,
// and the outcome's id is deterministic (<run>/rollback.verified) and
// published only once on its subject. A rollback without verify names
// needs nothing from the tester.
func (s *Service) onRollbackDone(ctx context.Context, ev *runbookv1.Event, _ *runbookv1.DeployFinished) error {
	run := ev.GetRunId()
	log := s.log.With("run_id", run, "event", ev.GetType())
	if _, busy := s.verifying.LoadOrStore(run, true); busy {
		return eventbus.Retry(errVerifying, time.Second)
	}
	defer s.verifying.Delete(run)

	h, err := s.history(ctx, run)
	if err != nil {
		return err
	}
	if done := h.VerifyOutcome; done != nil {
		log.Info("rollback already verified; nothing to do", "outcome", done.GetType())
		return nil
	}
	names := h.RollbackVerify
	if len(names) == 0 {
		return nil // the plan re-runs no suite after a rollback
	}
	pl, _, err := runplan.Load(ctx, s.bus, run)
	if err != nil {
		if errors.Is(err, runplan.ErrNoRun) {
			return eventbus.Permanent(err)
		}
		return fmt.Errorf("load plan of run %s: %w", run, err)
	}
	steps, missing := pl.Test.SuiteSteps(names)
	log.Info("verifying the rollback: re-running smoke suites", "suites", names, "tests", len(steps))
	suite := &runbookv1.TestSuiteResult{}
	if len(steps) > 0 {
		if suite, err = s.runSmoke(ctx, pl, steps, log); err != nil {
			// Interrupted (shutdown): proved nothing; run again on redelivery.
			return fmt.Errorf("verify the rollback of run %s: %w", run, err)
		}
	}
	// Validation refuses such a plan; an event that names a suite the
	// plan does not have fails closed.
	for _, name := range missing {
		suite.Tests = append(suite.Tests, &runbookv1.TestCase{Name: "suite " + name, Type: httprun.DefaultSmokeType, Status: httprun.StatusFail,
			Error: fmt.Sprintf("%q is not a suite of the plan's test.suites: nothing to re-run", name)})
		suite.Failed++
	}
	var out *runbookv1.Event
	if suite.Failed == 0 {
		out = eventbus.New(run, &runbookv1.Event_RollbackVerified{RollbackVerified: suite})
	} else {
		out = eventbus.New(run, &runbookv1.Event_RollbackVerifyFailed{RollbackVerifyFailed: suite})
	}
	out.Id = eventbus.ID(run, VerificationOutcomeID) // one verdict per run (see TestOutcomeID)
	if err := s.publishOnce(ctx, eventbus.CausedBy(out, ev)); err != nil {
		return fmt.Errorf("publish the verification of run %s: %w", run, err)
	}
	lvl := log.Info
	if suite.Failed > 0 {
		lvl = log.Error
	}
	lvl("rollback verification finished", "outcome", out.GetType(), "passed", suite.Passed, "failed", suite.Failed)
	return nil
}
