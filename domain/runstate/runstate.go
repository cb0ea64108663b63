// Package runstate is the fold that turns a run's events into its status.
// It is the same fold wherever a status is shown: the reporter, the CLI's
// `runs` and `watch`, the dashboards. Pure: no NATS, no database.
package runstate

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Status of a run.
type Status string

// Statuses in the order a run passes through them, then the final ones.
const (
	Submitted        Status = "SUBMITTED"
	Preflight        Status = "PREFLIGHT"
	AwaitingApproval Status = "AWAITING_APPROVAL"
	WaitingWindow    Status = "WAITING_WINDOW"
	Deploying        Status = "DEPLOYING"
	Verifying        Status = "VERIFYING"
	RollingBack      Status = "ROLLING_BACK"

	Success        Status = "SUCCESS"
	RolledBack     Status = "ROLLED_BACK"
	RollbackFailed Status = "ROLLBACK_FAILED"
	Failed         Status = "FAILED"
	Rejected       Status = "REJECTED"
	Expired        Status = "EXPIRED"
	Cancelled      Status = "CANCELLED"
	Invalid        Status = "INVALID"
)

// Final reports whether s is one of the final statuses.
func (s Status) Final() bool {
	switch s {
	case Success, RolledBack, RollbackFailed, Failed, Rejected, Expired, Cancelled, Invalid:
		return true
	}
	return false
}

// State is what the fold knows of one run.
type State struct {
	RunID     string
	Status    Status
	ChangeID  string
	Title     string
	Requester string

	DeployDone        bool
	DeployFailed      bool
	TestsPassed       bool
	TestsFailed       bool
	MonitorCompleted  bool
	RollbackRequested bool
	RollbackReason    string
	RollbackStarted   bool
	// RollbackVerify are the suites rollback.started named
	// (rollback_plan.verify) that the tester re-runs after the steps.
	RollbackVerify []string
	// VerifyPending: the rollback's steps are done (rollback.done) and its
	// verification has not reported: the run stays ROLLING_BACK until
	// rollback.verified (ROLLED_BACK) or rollback.verify.failed
	// (ROLLBACK_FAILED).
	VerifyPending bool
	ReportReady   bool
	FinalReason   string

	// WaitingFor is what a waiting run waits for, from its latest
	// run.waiting: the roles still to approve, or "change_window". Empty
	// unless Status is AWAITING_APPROVAL or WAITING_WINDOW.
	WaitingFor []string
	// WaitingUntil is when the change window opens, WaitingDeadline when
	// the run expires if it still waits (zero when none).
	WaitingUntil, WaitingDeadline time.Time

	seen          map[string]bool
	deployStarted bool
	// live are the stream sequences of the events folded with ApplyAt
	// that make the run exist, less those a consumer dead-lettered since;
	// unsequenced counts those folded with Apply (no sequence known).
	live        map[uint64]bool
	unsequenced int
}

// New starts the fold of one run.
func New(runID string) *State {
	return &State{RunID: runID, seen: map[string]bool{}}
}

// Apply folds one event in. An event id seen before is ignored, so a
// redelivered or replayed event never counts twice. It reports whether the
// event changed the state.
func (s *State) Apply(ev *runbookv1.Event) bool { return s.ApplyAt(0, ev) }

// ApplyAt is Apply for the event stored at stream sequence seq (0:
// unknown); with the sequence the fold also knows whether the run exists
// (Exists).
func (s *State) ApplyAt(seq uint64, ev *runbookv1.Event) bool {
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	if s.seen[ev.GetId()] {
		return false
	}
	s.seen[ev.GetId()] = true
	if dl := ev.GetEventDeadLettered(); dl != nil {
		// A consumer refused a message of the run: it is no part of the
		// run, and if the fold took it in (it decoded but was not
		// accepted, e.g. an unsigned change request) it no longer makes
		// the run exist. The dead letter itself makes no run either.
		delete(s.live, dl.GetOriginalSequence())
		return true
	}
	if seq == 0 {
		s.unsequenced++
	} else {
		if s.live == nil {
			s.live = map[uint64]bool{}
		}
		s.live[seq] = true
	}
	if s.Status == "" {
		s.Status = Submitted
	}
	switch p := ev.Payload.(type) {
	case *runbookv1.Event_ChangeRequested:
		s.ChangeID, s.Title, s.Requester = p.ChangeRequested.GetChangeId(), p.ChangeRequested.GetTitle(), p.ChangeRequested.GetRequester()
	case *runbookv1.Event_ChangeRejected:
		s.finish(Invalid, "the plan is invalid")
	case *runbookv1.Event_PreflightStarted:
		s.advance(Preflight)
	case *runbookv1.Event_PreflightFailed:
		s.finish(Failed, "pre-flight failed: "+p.PreflightFailed.GetReason())
	case *runbookv1.Event_RunWaiting:
		w := p.RunWaiting
		if s.deployStarted {
			break
		}
		if len(w.GetWaitingFor()) > 0 && w.GetWaitingFor()[0] == "change_window" {
			s.advance(WaitingWindow)
		} else {
			s.advance(AwaitingApproval)
		}
		s.WaitingFor = w.GetWaitingFor()
		s.WaitingUntil, s.WaitingDeadline = timeOf(w.GetUntil()), timeOf(w.GetDeadline())
	case *runbookv1.Event_ApprovalRejected:
		// A rejection ends the run unless its deploy started first (the
		// deployer goes by the same stream order).
		if !s.deployStarted {
			a := p.ApprovalRejected
			who := or(a.GetApprover(), ev.GetActor())
			reason := "rejected by " + or(who, "an unnamed approver")
			if a.GetRole() != "" {
				reason += " as " + a.GetRole()
			}
			s.finish(Rejected, reason+": "+or(a.GetReason(), "no reason given"))
		}
	case *runbookv1.Event_RunExpired:
		s.finish(Expired, p.RunExpired.GetReason())
	case *runbookv1.Event_RunCancelled:
		s.finish(Cancelled, p.RunCancelled.GetReason())
	case *runbookv1.Event_RunFailed:
		s.finish(Failed, p.RunFailed.GetReason())
	case *runbookv1.Event_DeployStarted:
		s.deployStarted = true
		s.advance(Deploying)
	case *runbookv1.Event_DeployDone:
		s.DeployDone = true
		s.advance(Verifying)
	case *runbookv1.Event_DeployFailed:
		s.DeployFailed = true
	case *runbookv1.Event_TestPassed:
		s.TestsPassed = true
	case *runbookv1.Event_TestFailed:
		s.TestsFailed = true
	case *runbookv1.Event_MonitorCompleted:
		s.MonitorCompleted = true
	case *runbookv1.Event_RollbackRequested:
		if !s.RollbackRequested {
			s.RollbackReason = p.RollbackRequested.GetReason()
		}
		s.RollbackRequested = true
	case *runbookv1.Event_RollbackStarted:
		s.RollbackRequested = true
		if p.RollbackStarted.GetReason() != "" {
			s.RollbackReason = p.RollbackStarted.GetReason()
		}
		if !s.RollbackStarted { // there is one: the stream refuses a second
			s.RollbackVerify = p.RollbackStarted.GetVerify()
		}
		s.RollbackStarted = true
		s.advance(RollingBack)
	case *runbookv1.Event_RollbackDone:
		if len(s.RollbackVerify) > 0 && !s.Status.Final() {
			s.VerifyPending = true // final once the tester has re-run the suites
			break
		}
		s.finish(RolledBack, "rolled back: "+s.RollbackReason)
	case *runbookv1.Event_RollbackVerified:
		if s.VerifyPending {
			s.VerifyPending = false
			s.finish(RolledBack, fmt.Sprintf("rolled back: %s; verified: %d suite(s) passed (%s)",
				s.RollbackReason, len(s.RollbackVerify), strings.Join(s.RollbackVerify, ", ")))
		}
	case *runbookv1.Event_RollbackVerifyFailed:
		if s.VerifyPending {
			s.VerifyPending = false
			s.finish(RollbackFailed, VerifyFailedReason(p.RollbackVerifyFailed))
		}
	case *runbookv1.Event_RollbackFailed:
		s.finish(RollbackFailed, "rollback failed: production is in an unknown state")
	case *runbookv1.Event_ReportReady:
		s.ReportReady = true
	}
	if s.Status != AwaitingApproval && s.Status != WaitingWindow {
		s.WaitingFor, s.WaitingUntil, s.WaitingDeadline = nil, time.Time{}, time.Time{}
	}
	if !s.Status.Final() && !s.RollbackRequested && s.DeployDone && s.MonitorCompleted {
		switch {
		case s.TestsPassed:
			s.finish(Success, "deployed, every test passed, the watch window ended without a rollback")
		case s.TestsFailed:
			s.finish(Failed, "tests failed and the plan asked for no rollback")
		}
	}
	return true
}

// Exists reports whether the run exists: the fold took in an event of it
// that no consumer has dead-lettered. A run of dead letters only (garbage,
// a truncated or unknown payload published on its subjects) or whose only
// event was refused by its consumers (an unsigned change request) does
// not: no listing shows it. The one rule every reader of runs goes by.
func (s *State) Exists() bool { return s.unsequenced > 0 || len(s.live) > 0 }

// VerifyFailedReason is the final reason of a run whose rollback's
// verification failed (rollback.verify.failed): the tests that failed.
func VerifyFailedReason(r *runbookv1.TestSuiteResult) string {
	var failed []string
	for _, c := range r.GetTests() {
		if strings.EqualFold(c.GetStatus(), "FAIL") {
			failed = append(failed, c.GetName())
		}
	}
	what := "a test failed"
	if len(failed) > 0 {
		what = fmt.Sprintf("%d of %d test(s) failed: %s", len(failed), len(r.GetTests()), strings.Join(failed, ", "))
	}
	return "rolled back, but the verification failed: " + what + " — production state uncertain"
}

func (s *State) advance(to Status) {
	if s.Status.Final() {
		return
	}
	s.Status = to
}

func (s *State) finish(to Status, reason string) {
	if s.Status.Final() {
		return
	}
	s.Status = to
	s.FinalReason = reason
}

func timeOf(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Fold folds a whole history.
func Fold(runID string, events []*runbookv1.Event) *State {
	s := New(runID)
	for _, ev := range events {
		s.Apply(ev)
	}
	return s
}

// Phase is the runbook phase a run with status s is in: PRE-FLIGHT, PLAN,
// ACT, TEST, or REPORT once it is final.
func (s Status) Phase() string {
	switch s {
	case Submitted, Preflight, "":
		return "PRE-FLIGHT"
	case AwaitingApproval, WaitingWindow:
		return "PLAN"
	case Deploying, RollingBack:
		return "ACT"
	case Verifying:
		return "TEST"
	}
	return "REPORT"
}
