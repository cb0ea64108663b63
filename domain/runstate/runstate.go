// Package runstate is the one fold of a run's events: its status and the
// facts every reader decides by — whether the deploy started or finished and
// by which event, whether the run was stopped before its deploy, whether a
// rollback was asked for, started or ended, the tests' and the rollback
// verification's outcome, run.failed. The deployer (its journal), the CLI
// (runs, watch, approve, reject, cancel, rollback), the monitor, the
// tester, the notifier, the reporter and its read API all fold a run with
// it; a reader that needs more (the deployer's step attempts, the monitor's
// violation maxima) adds it in the same loop over the events, never by
// reading the status rules a second time. Where services once disagreed the
// deployer's semantics rule: it is the one that acts. Pure: no NATS, no
// database.
package runstate

import (
	"fmt"
	"slices"
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

// Statuses are every status, in the order a run passes through them, then
// the final ones (a new slice: callers may keep or change it).
func Statuses() []Status {
	return []Status{
		Submitted, Preflight, AwaitingApproval, WaitingWindow, Deploying, Verifying, RollingBack,
		Success, RolledBack, RollbackFailed, Failed, Rejected, Expired, Cancelled, Invalid,
	}
}

// ParseStatus reads a status name, in any case ("rolled_back").
func ParseStatus(name string) (Status, error) {
	s := Status(strings.ToUpper(strings.TrimSpace(name)))
	if slices.Contains(Statuses(), s) {
		return s, nil
	}
	return "", fmt.Errorf("status %q: want one of %s", name, strings.Join(StatusNames(), ", "))
}

// StatusNames are Statuses as strings.
func StatusNames() []string {
	all := Statuses()
	names := make([]string, len(all))
	for i, st := range all {
		names[i] = string(st)
	}
	return names
}

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

	// The events the facts below come from: the first of each kind unless
	// said otherwise, nil until folded.

	// Request is the run's change.requested; PlanSHA256 the digest of its
	// plan, RequesterKey the key that signed it ("" unsigned).
	Request      *runbookv1.Event
	PlanSHA256   string
	RequesterKey string
	// PreflightPassed: preflight.passed; ReadyAt is its time, from which
	// the gate counts its deadlines.
	PreflightPassed bool
	ReadyAt         time.Time
	// ApprovalsRequired are the roles the latest plan.assessed requires;
	// Assessed whether pre-flight assessed the plan yet.
	ApprovalsRequired []string
	Assessed          bool
	// Stopped is the event that ended the run before its deploy started:
	// approval.rejected, run.cancelled or run.expired. In stream order the
	// first of a stop and deploy.started wins (the deployer's rule): once
	// the deploy started, a rejection, cancel or expiry stops nothing —
	// stopping a deploy means rolling it back.
	Stopped *runbookv1.Event
	// DeployStart is deploy.started: its causation id names the event
	// whose handler deploys. DeployEnd is deploy.done or deploy.failed.
	DeployStart, DeployEnd *runbookv1.Event
	// MonitorStart is monitor.started (the window's baseline).
	MonitorStart *runbookv1.Event
	// TestStart is test.started, TestOutcome test.passed or test.failed.
	TestStart, TestOutcome *runbookv1.Event
	// RollbackRequests are the run's rollback.requested, in stream order.
	RollbackRequests []*runbookv1.Event
	// RollbackStart is rollback.started (the stream holds one per run),
	// RollbackEnd rollback.done or rollback.failed.
	RollbackStart, RollbackEnd *runbookv1.Event
	// VerifyOutcome is rollback.verified or rollback.verify.failed (the
	// status counts it only once rollback.done left the run VerifyPending).
	VerifyOutcome *runbookv1.Event
	// RunFailed is run.failed: a failure nothing undid.
	RunFailed *runbookv1.Event
	// RevertRequests are the run's revert.requested, in stream order: the
	// runs that revert it (`runbook revert`; RevertedBy). They come after
	// the run ended SUCCESS and change nothing of its status.
	RevertRequests []*runbookv1.Event
	// DeadLetter is the first event.dead_lettered of a message of the run
	// a consumer accepted and gave up on when its deliveries ran out
	// (DeadLettered.exhausted): the run needed it handled, so it failed
	// (DeadLetterReason). A refused message's dead letter is never here.
	DeadLetter *runbookv1.Event

	seen map[string]bool
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
		if dl.GetExhausted() {
			// A consumer gave up on an event of the run it had accepted:
			// the event stays part of the run, and the run — if it exists:
			// a dead letter makes no run — fails naming it, unless it
			// already ended.
			if s.Exists() {
				if s.DeadLetter == nil {
					s.DeadLetter = ev
				}
				s.finish(Failed, DeadLetterReason(dl))
			}
			return true
		}
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
	s.facts(ev)
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
		if s.DeployStart != nil {
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
		if s.Stopped == ev {
			a := p.ApprovalRejected
			who := or(a.GetApprover(), ev.GetActor())
			reason := "rejected by " + or(who, "an unnamed approver")
			if a.GetRole() != "" {
				reason += " as " + a.GetRole()
			}
			s.finish(Rejected, reason+": "+or(a.GetReason(), "no reason given"))
		}
	case *runbookv1.Event_RunExpired:
		if s.Stopped == ev {
			s.finish(Expired, p.RunExpired.GetReason())
		}
	case *runbookv1.Event_RunCancelled:
		if s.Stopped == ev {
			s.finish(Cancelled, p.RunCancelled.GetReason())
		}
	case *runbookv1.Event_RunFailed:
		s.finish(Failed, p.RunFailed.GetReason())
	case *runbookv1.Event_DeployStarted:
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

// facts records the events the run's facts come from (see State).
func (s *State) facts(ev *runbookv1.Event) {
	first := func(at **runbookv1.Event) {
		if *at == nil {
			*at = ev
		}
	}
	switch p := ev.Payload.(type) {
	case *runbookv1.Event_ChangeRequested:
		if s.Request == nil {
			s.Request = ev
			s.PlanSHA256 = p.ChangeRequested.GetPlanSha256()
			s.RequesterKey = ev.GetSignature().GetKey()
		}
	case *runbookv1.Event_PreflightPassed:
		if !s.PreflightPassed && ev.GetTime() != nil {
			s.ReadyAt = ev.GetTime().AsTime()
		}
		s.PreflightPassed = true
	case *runbookv1.Event_PlanAssessed:
		s.ApprovalsRequired, s.Assessed = p.PlanAssessed.GetApprovalsRequired(), true
	case *runbookv1.Event_ApprovalRejected, *runbookv1.Event_RunCancelled, *runbookv1.Event_RunExpired:
		if s.DeployStart == nil {
			first(&s.Stopped)
		}
	case *runbookv1.Event_DeployStarted:
		first(&s.DeployStart)
	case *runbookv1.Event_DeployDone, *runbookv1.Event_DeployFailed:
		first(&s.DeployEnd)
	case *runbookv1.Event_MonitorStarted:
		first(&s.MonitorStart)
	case *runbookv1.Event_TestStarted:
		first(&s.TestStart)
	case *runbookv1.Event_TestPassed, *runbookv1.Event_TestFailed:
		first(&s.TestOutcome)
	case *runbookv1.Event_RollbackRequested:
		s.RollbackRequests = append(s.RollbackRequests, ev)
	case *runbookv1.Event_RollbackStarted:
		first(&s.RollbackStart)
	case *runbookv1.Event_RollbackDone, *runbookv1.Event_RollbackFailed:
		first(&s.RollbackEnd)
	case *runbookv1.Event_RollbackVerified, *runbookv1.Event_RollbackVerifyFailed:
		first(&s.VerifyOutcome)
	case *runbookv1.Event_RunFailed:
		first(&s.RunFailed)
	case *runbookv1.Event_RevertRequested:
		s.RevertRequests = append(s.RevertRequests, ev)
	}
}

// Seen reports whether the fold took in the event with this id.
func (s *State) Seen(id string) bool { return s.seen[id] }

// DeployStarted reports whether the run's deploy started (deploy.started).
func (s *State) DeployStarted() bool { return s.DeployStart != nil }

// DeployFinished reports whether the deploy ended, done or failed.
func (s *State) DeployFinished() bool { return s.DeployEnd != nil }

// RollbackUnderWay reports whether the run's rollback started: the
// change is being (or was) undone.
func (s *State) RollbackUnderWay() bool { return s.RollbackStart != nil }

// TestsEnded reports whether the tester reported the tests' outcome.
func (s *State) TestsEnded() bool { return s.TestOutcome != nil }

// DeployOver reports whether nothing of the run deploys any more: its
// deploy finished, a rollback started, it was stopped before its deploy
// started, it failed with nothing undone (run.failed), or it is final.
func (s *State) DeployOver() bool {
	return s.DeployFinished() || s.RollbackUnderWay() || s.Stopped != nil || s.RunFailed != nil || s.Status.Final()
}

// DeployInterruptedReason is the error of the deploy.failed that ends a
// deploy whose deployer stopped mid-way while the run went on without it:
// "interrupted; " and what became of the run — rolled back, its rollback
// failed or still under way, or how it ended.
func (s *State) DeployInterruptedReason() string {
	const p = "interrupted; "
	switch {
	case s.RollbackEnd.GetRollbackDone() != nil:
		return p + "rolled back"
	case s.RollbackEnd != nil:
		return p + "the rollback failed"
	case s.RollbackStart != nil:
		return p + "rolling back"
	case s.RunFailed != nil:
		return p + "the run failed: " + s.RunFailed.GetRunFailed().GetReason()
	case s.Status.Final():
		return p + "the run ended " + string(s.Status) + ": " + s.FinalReason
	}
	return p + "the deploy did not resume"
}

// RollbackRequestedBy is who asked for the run's rollback: the requester
// rollback.started names, else the first request's ("" when none).
func (s *State) RollbackRequestedBy() string {
	if by := s.RollbackStart.GetRollbackStarted().GetRequestedBy(); by != "" || len(s.RollbackRequests) == 0 {
		return by
	}
	return s.RollbackRequests[0].GetRollbackRequested().GetRequestedBy()
}

// RollbackRequestBy is the first rollback.requested whose requested_by
// is who, or nil.
func (s *State) RollbackRequestBy(who string) *runbookv1.Event {
	for _, r := range s.RollbackRequests {
		if r.GetRollbackRequested().GetRequestedBy() == who {
			return r
		}
	}
	return nil
}

// Exists reports whether the run exists: the fold took in an event of it
// that no consumer has dead-lettered. A run of dead letters only (garbage,
// a truncated or unknown payload published on its subjects) or whose only
// event was refused by its consumers (an unsigned change request) does
// not: no listing shows it. The one rule every reader of runs goes by.
func (s *State) Exists() bool { return s.unsequenced > 0 || len(s.live) > 0 }

// DeadLetterReason is the final reason of a run failed by the dead letter
// of an event it needed (DeadLettered.exhausted): which event, which
// consumer gave up, after how many deliveries and why.
func DeadLetterReason(d *runbookv1.DeadLettered) string {
	what := "an event"
	if parts := strings.SplitN(d.GetOriginalSubject(), ".", 3); len(parts) == 3 {
		what = parts[2]
	}
	return fmt.Sprintf("event.dead_lettered: %s (stream sequence %d) was never handled: the %s consumer gave up after %d deliveries: %s",
		what, d.GetOriginalSequence(), or(d.GetConsumer(), "unnamed"), d.GetDeliveries(), or(d.GetReason(), "no reason given"))
}

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
