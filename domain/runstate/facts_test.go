package runstate

import (
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

var t0 = time.Date(2025, 9, 22, 14, 30, 0, 0, time.UTC)

// mk makes event id of run R with payload (an Event_* wrapper), at t0 plus
// n seconds (n is the event's place in its history).
func mk(id, typ string, payload any, n int) *runbookv1.Event {
	ev := &runbookv1.Event{Id: "R/" + id, RunId: "R", Type: typ, Time: timestamppb.New(t0.Add(time.Duration(n) * time.Second))}
	reflect.ValueOf(ev).Elem().FieldByName("Payload").Set(reflect.ValueOf(payload))
	return ev
}

// builder makes one event of a history, the n-th (its time is t0+n s).
type builder func(n int) *runbookv1.Event

var (
	cr = func(n int) *runbookv1.Event {
		e := mk("cr", "change.requested", &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-1", Title: "t", PlanSha256: "abc"}}, n)
		e.Signature = &runbookv1.Signature{Key: "key-alice"}
		return e
	}
	pfStarted = func(n int) *runbookv1.Event {
		return mk("ps", "preflight.started", &runbookv1.Event_PreflightStarted{PreflightStarted: &runbookv1.PreflightStarted{}}, n)
	}
	assessed = func(n int) *runbookv1.Event {
		return mk("pa", "plan.assessed", &runbookv1.Event_PlanAssessed{PlanAssessed: &runbookv1.PlanAssessed{ApprovalsRequired: []string{"technical_approval"}}}, n)
	}
	pfPassed = func(n int) *runbookv1.Event {
		return mk("pp", "preflight.passed", &runbookv1.Event_PreflightPassed{PreflightPassed: &runbookv1.PreflightResult{}}, n)
	}
	waiting = func(n int) *runbookv1.Event {
		return mk("w", "run.waiting", &runbookv1.Event_RunWaiting{RunWaiting: &runbookv1.RunWaiting{WaitingFor: []string{"technical_approval"}}}, n)
	}
	granted = func(n int) *runbookv1.Event {
		return mk("ag", "approval.granted", &runbookv1.Event_ApprovalGranted{ApprovalGranted: &runbookv1.Approval{Role: "technical_approval", Approver: "Lead"}}, n)
	}
	rejected = func(n int) *runbookv1.Event {
		return mk("ar", "approval.rejected", &runbookv1.Event_ApprovalRejected{ApprovalRejected: &runbookv1.Approval{Role: "technical_approval", Approver: "Lead", Reason: "no"}}, n)
	}
	cancelled = func(n int) *runbookv1.Event {
		return mk("rc", "run.cancelled", &runbookv1.Event_RunCancelled{RunCancelled: &runbookv1.RunEnded{Reason: "cancelled by ops: wrong day"}}, n)
	}
	expired = func(n int) *runbookv1.Event {
		return mk("rx", "run.expired", &runbookv1.Event_RunExpired{RunExpired: &runbookv1.RunEnded{Reason: "approvals timed out"}}, n)
	}
	deployStarted = func(n int) *runbookv1.Event {
		e := mk("ds", "deploy.started", &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 2}}, n)
		e.CausationId = "R/ag"
		return e
	}
	// a second deploy.started with the same id (a redelivery): not a fact.
	deployStartedAgain = func(n int) *runbookv1.Event {
		e := deployStarted(n)
		e.CausationId = "R/pp"
		return e
	}
	deployDone = func(n int) *runbookv1.Event {
		return mk("dd", "deploy.done", &runbookv1.Event_DeployDone{DeployDone: &runbookv1.DeployFinished{StepsSucceeded: 2}}, n)
	}
	deployFailed = func(n int) *runbookv1.Event {
		return mk("df", "deploy.failed", &runbookv1.Event_DeployFailed{DeployFailed: &runbookv1.DeployFinished{Error: "exit 1", FailedStep: "migrate"}}, n)
	}
	monitorStarted = func(n int) *runbookv1.Event {
		return mk("ms", "monitor.started", &runbookv1.Event_MonitorStarted{MonitorStarted: &runbookv1.MonitorStarted{}}, n)
	}
	monitorCompleted = func(n int) *runbookv1.Event {
		return mk("mc", "monitor.completed", &runbookv1.Event_MonitorCompleted{MonitorCompleted: &runbookv1.MonitorCompleted{}}, n)
	}
	testStarted = func(n int) *runbookv1.Event {
		return mk("ts", "test.started", &runbookv1.Event_TestStarted{TestStarted: &runbookv1.TestStarted{SmokeTests: 3}}, n)
	}
	testPassed = func(n int) *runbookv1.Event {
		return mk("tp", "test.passed", &runbookv1.Event_TestPassed{TestPassed: &runbookv1.TestOutcome{Passed: 3}}, n)
	}
	testFailed = func(n int) *runbookv1.Event {
		return mk("tf", "test.failed", &runbookv1.Event_TestFailed{TestFailed: &runbookv1.TestOutcome{Failed: 1, Reason: "Login: HTTP 500"}}, n)
	}
	testStopped = func(n int) *runbookv1.Event {
		return mk("tf", "test.failed", &runbookv1.Event_TestFailed{TestFailed: &runbookv1.TestOutcome{Stopped: "rollback started by monitor"}}, n)
	}
	requested = func(by string) builder {
		return func(n int) *runbookv1.Event {
			return mk("rr-"+by, "rollback.requested", &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{RequestedBy: by, Reason: "asked by " + by}}, n)
		}
	}
	rbStarted = func(by string, verify ...string) builder {
		return func(n int) *runbookv1.Event {
			return mk("rs", "rollback.started", &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{RequestedBy: by, Reason: "asked by " + by, Steps: 1, Verify: verify}}, n)
		}
	}
	rbDone = func(n int) *runbookv1.Event {
		return mk("rd", "rollback.done", &runbookv1.Event_RollbackDone{RollbackDone: &runbookv1.DeployFinished{StepsSucceeded: 1}}, n)
	}
	rbFailed = func(n int) *runbookv1.Event {
		return mk("rf", "rollback.failed", &runbookv1.Event_RollbackFailed{RollbackFailed: &runbookv1.DeployFinished{Error: "disk full"}}, n)
	}
	verified = func(n int) *runbookv1.Event {
		return mk("rv", "rollback.verified", &runbookv1.Event_RollbackVerified{RollbackVerified: &runbookv1.TestSuiteResult{Passed: 1, Tests: []*runbookv1.TestCase{{Name: "Health", Status: "PASS"}}}}, n)
	}
	runFailed = func(n int) *runbookv1.Event {
		return mk("fail", "run.failed", &runbookv1.Event_RunFailed{RunFailed: &runbookv1.RunEnded{Reason: "no rollback steps: nothing was undone — manual action needed"}}, n)
	}
	deadLetterOf = func(seq uint64) builder {
		return func(n int) *runbookv1.Event {
			return mk("dl", "event.dead_lettered", &runbookv1.Event_EventDeadLettered{EventDeadLettered: &runbookv1.DeadLettered{Consumer: "deployer", OriginalSequence: seq}}, n)
		}
	}
)

// facts is what the table asserts of a fold: the status and every fact a
// reader decides by, event facts by id ("" for none).
type facts struct {
	status          Status
	stopped         string // Stopped's id
	deployStart     string // DeployStart's id
	deployStartedBy string // its causation id
	deployEnd       string
	deployOver      bool
	rollbackReqs    int
	rollbackBy      string
	rollbackStart   string
	rollbackEnd     string
	verifyPending   bool
	verifyOutcome   string
	runFailed       string
	testStart       string
	testOutcome     string
	monitorStart    string
}

func factsOf(s *State) facts {
	return facts{
		status: s.Status, stopped: s.Stopped.GetId(), deployStart: s.DeployStart.GetId(), deployStartedBy: s.DeployStart.GetCausationId(),
		deployEnd: s.DeployEnd.GetId(), deployOver: s.DeployOver(), rollbackReqs: len(s.RollbackRequests), rollbackBy: s.RollbackRequestedBy(),
		rollbackStart: s.RollbackStart.GetId(), rollbackEnd: s.RollbackEnd.GetId(), verifyPending: s.VerifyPending,
		verifyOutcome: s.VerifyOutcome.GetId(), runFailed: s.RunFailed.GetId(), testStart: s.TestStart.GetId(),
		testOutcome: s.TestOutcome.GetId(), monitorStart: s.MonitorStart.GetId(),
	}
}

// TestFacts folds event sequences every reader meets and asserts the
// status and the facts the deployer, CLI, monitor, tester, notifier and
// reporter decide by: one fold, one answer.
func TestFacts(t *testing.T) {
	t.Parallel()
	gate := []builder{cr, pfStarted, assessed, pfPassed, waiting, granted}
	with := func(rest ...builder) []builder { return append(append([]builder{}, gate...), rest...) }
	for _, tc := range []struct {
		name   string
		events []builder
		want   facts
	}{
		{"good run", with(deployStarted, deployDone, monitorStarted, testStarted, testPassed, monitorCompleted),
			facts{status: Success, deployStart: "R/ds", deployStartedBy: "R/ag", deployEnd: "R/dd", deployOver: true,
				testStart: "R/ts", testOutcome: "R/tp", monitorStart: "R/ms"}},
		{"deploying: the deploy is not over", with(deployStarted),
			facts{status: Deploying, deployStart: "R/ds", deployStartedBy: "R/ag"}},
		{"a redelivered deploy.started changes nothing", with(deployStarted, deployStartedAgain),
			facts{status: Deploying, deployStart: "R/ds", deployStartedBy: "R/ag"}},
		{"tests failed, no rollback asked for", with(deployStarted, deployDone, monitorStarted, testStarted, testFailed, monitorCompleted),
			facts{status: Failed, deployStart: "R/ds", deployStartedBy: "R/ag", deployEnd: "R/dd", deployOver: true,
				testStart: "R/ts", testOutcome: "R/tf", monitorStart: "R/ms"}},
		{"rolled back by the monitor while the tests ran", with(deployStarted, deployDone, monitorStarted, testStarted, requested("monitor"), rbStarted("monitor"), testStopped, rbDone, monitorCompleted),
			facts{status: RolledBack, deployStart: "R/ds", deployStartedBy: "R/ag", deployEnd: "R/dd", deployOver: true,
				rollbackReqs: 1, rollbackBy: "monitor", rollbackStart: "R/rs", rollbackEnd: "R/rd",
				testStart: "R/ts", testOutcome: "R/tf", monitorStart: "R/ms"}},
		{"rollback asked for, not started yet", with(deployStarted, deployDone, requested("operator")),
			facts{status: Verifying, deployStart: "R/ds", deployStartedBy: "R/ag", deployEnd: "R/dd", deployOver: true,
				rollbackReqs: 1, rollbackBy: "operator"}},
		{"deploy failed, rolled back; a second request", with(deployStarted, deployFailed, requested("deployer"), rbStarted("deployer"), requested("operator"), rbDone),
			facts{status: RolledBack, deployStart: "R/ds", deployStartedBy: "R/ag", deployEnd: "R/df", deployOver: true,
				rollbackReqs: 2, rollbackBy: "deployer", rollbackStart: "R/rs", rollbackEnd: "R/rd"}},
		{"rollback failed", with(deployStarted, deployFailed, requested("deployer"), rbStarted("deployer"), rbFailed),
			facts{status: RollbackFailed, deployStart: "R/ds", deployStartedBy: "R/ag", deployEnd: "R/df", deployOver: true,
				rollbackReqs: 1, rollbackBy: "deployer", rollbackStart: "R/rs", rollbackEnd: "R/rf"}},
		{"rejected before the deploy started", []builder{cr, pfStarted, assessed, pfPassed, waiting, rejected},
			facts{status: Rejected, stopped: "R/ar", deployOver: true}},
		{"rejected, then the deploy.started of a lost race: stopped all the same", []builder{cr, pfPassed, rejected, deployStarted},
			facts{status: Rejected, stopped: "R/ar", deployStart: "R/ds", deployStartedBy: "R/ag", deployOver: true}},
		{"rejected after the deploy started: it goes on", with(deployStarted, rejected),
			facts{status: Deploying, deployStart: "R/ds", deployStartedBy: "R/ag"}},
		{"cancelled before the deploy started", []builder{cr, pfPassed, waiting, cancelled},
			facts{status: Cancelled, stopped: "R/rc", deployOver: true}},
		{"cancel races deploy.started and loses: the run deploys", with(deployStarted, cancelled, deployDone, monitorStarted, testStarted, testPassed, monitorCompleted),
			facts{status: Success, deployStart: "R/ds", deployStartedBy: "R/ag", deployEnd: "R/dd", deployOver: true,
				testStart: "R/ts", testOutcome: "R/tp", monitorStart: "R/ms"}},
		{"cancel races deploy.started and wins", []builder{cr, pfPassed, granted, cancelled, deployStarted},
			facts{status: Cancelled, stopped: "R/rc", deployStart: "R/ds", deployStartedBy: "R/ag", deployOver: true}},
		{"expired waiting", []builder{cr, pfPassed, waiting, expired},
			facts{status: Expired, stopped: "R/rx", deployOver: true}},
		{"the first stop wins", []builder{cr, pfPassed, waiting, cancelled, rejected, expired},
			facts{status: Cancelled, stopped: "R/rc", deployOver: true}},
		{"run.failed: nothing undone", with(deployStarted, deployFailed, requested("deployer"), runFailed),
			facts{status: Failed, deployStart: "R/ds", deployStartedBy: "R/ag", deployEnd: "R/df", deployOver: true,
				rollbackReqs: 1, rollbackBy: "deployer", runFailed: "R/fail"}},
		{"run.failed while the deploy runs: over before it finished", with(deployStarted, requested("monitor"), runFailed),
			facts{status: Failed, deployStart: "R/ds", deployStartedBy: "R/ag", deployOver: true,
				rollbackReqs: 1, rollbackBy: "monitor", runFailed: "R/fail"}},
		{"verify pending", with(deployStarted, deployDone, requested("monitor"), rbStarted("monitor", "critical_paths"), rbDone),
			facts{status: RollingBack, deployStart: "R/ds", deployStartedBy: "R/ag", deployEnd: "R/dd", deployOver: true,
				rollbackReqs: 1, rollbackBy: "monitor", rollbackStart: "R/rs", rollbackEnd: "R/rd", verifyPending: true}},
		{"verified", with(deployStarted, deployDone, requested("monitor"), rbStarted("monitor", "critical_paths"), rbDone, verified),
			facts{status: RolledBack, deployStart: "R/ds", deployStartedBy: "R/ag", deployEnd: "R/dd", deployOver: true,
				rollbackReqs: 1, rollbackBy: "monitor", rollbackStart: "R/rs", rollbackEnd: "R/rd", verifyOutcome: "R/rv"}},
		{"dead letters change no fact", with(deadLetterOf(99), deployStarted, deadLetterOf(98), deployDone),
			facts{status: Verifying, deployStart: "R/ds", deployStartedBy: "R/ag", deployEnd: "R/dd", deployOver: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := New("R")
			for i, b := range tc.events {
				s.ApplyAt(uint64(i+1), b(i))
			}
			if got := factsOf(s); got != tc.want {
				t.Errorf("facts\n got %+v\nwant %+v", got, tc.want)
			}
			if !s.Exists() {
				t.Error("the run does not exist")
			}
		})
	}
}

// The gate's inputs, read once for the deployer and the CLI.
func TestGateFacts(t *testing.T) {
	t.Parallel()
	s := New("R")
	for i, b := range []builder{cr, pfStarted, assessed, pfPassed} {
		s.Apply(b(i))
	}
	if s.Request.GetId() != "R/cr" || s.PlanSHA256 != "abc" || s.RequesterKey != "key-alice" {
		t.Errorf("request %q sha %q key %q", s.Request.GetId(), s.PlanSHA256, s.RequesterKey)
	}
	if !s.PreflightPassed || !s.ReadyAt.Equal(t0.Add(3*time.Second)) {
		t.Errorf("ready %v at %v", s.PreflightPassed, s.ReadyAt)
	}
	if !s.Assessed || len(s.ApprovalsRequired) != 1 || s.ApprovalsRequired[0] != "technical_approval" {
		t.Errorf("assessed %v %v", s.Assessed, s.ApprovalsRequired)
	}
	if !s.Seen("R/pp") || s.Seen("R/ds") {
		t.Error("Seen")
	}
	// A second preflight.passed (a redelivery with another id) keeps the
	// first time: the gate's deadlines do not move.
	again := pfPassed(9)
	again.Id = "R/pp2"
	s.Apply(again)
	if !s.ReadyAt.Equal(t0.Add(3 * time.Second)) {
		t.Errorf("ready at %v", s.ReadyAt)
	}
}
