package runstate

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

func TestGateStatuses(t *testing.T) {
	t.Parallel()
	until := time.Date(2025, 9, 23, 2, 0, 0, 0, time.UTC)
	waitApproval := &runbookv1.Event{Id: "w1", Payload: &runbookv1.Event_RunWaiting{RunWaiting: &runbookv1.RunWaiting{WaitingFor: []string{"a", "b"}, Deadline: timestamppb.New(until)}}}
	waitWindow := &runbookv1.Event{Id: "w2", Payload: &runbookv1.Event_RunWaiting{RunWaiting: &runbookv1.RunWaiting{WaitingFor: []string{"change_window"}, Until: timestamppb.New(until)}}}
	rejected := &runbookv1.Event{Id: "r", Payload: &runbookv1.Event_ApprovalRejected{ApprovalRejected: &runbookv1.Approval{Role: "business_approval", Approver: "Bob", Reason: "not during the sale"}}}
	started := &runbookv1.Event{Id: "d", Payload: &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{}}}

	s := Fold("R", []*runbookv1.Event{waitApproval})
	if s.Status != AwaitingApproval || strings.Join(s.WaitingFor, ",") != "a,b" || !s.WaitingDeadline.Equal(until) || !s.WaitingUntil.IsZero() {
		t.Fatalf("awaiting approval: %+v", s)
	}
	s.Apply(waitWindow)
	if s.Status != WaitingWindow || s.WaitingFor[0] != "change_window" || !s.WaitingUntil.Equal(until) || !s.WaitingDeadline.IsZero() {
		t.Fatalf("waiting for the window: %+v", s)
	}
	s.Apply(started)
	if s.Status != Deploying || s.WaitingFor != nil || !s.WaitingUntil.IsZero() {
		t.Fatalf("deploying: %+v", s)
	}

	s = Fold("R", []*runbookv1.Event{waitApproval, rejected})
	if s.Status != Rejected || s.FinalReason != "rejected by Bob as business_approval: not during the sale" || s.WaitingFor != nil {
		t.Fatalf("rejected: %+v", s)
	}
	// The deploy started first: a later rejection does not end the run.
	s = Fold("R", []*runbookv1.Event{waitApproval, started, rejected})
	if s.Status != Deploying {
		t.Fatalf("rejection after deploy.started: %+v", s)
	}
	// No approver named: the actor; no reason: said so.
	anon := &runbookv1.Event{Id: "r2", Payload: &runbookv1.Event_ApprovalRejected{ApprovalRejected: &runbookv1.Approval{}}}
	anon.Actor = "mallory"
	if s = Fold("R", []*runbookv1.Event{anon}); s.FinalReason != "rejected by mallory: no reason given" {
		t.Fatalf("%q", s.FinalReason)
	}
	exp := &runbookv1.Event{Id: "x", Payload: &runbookv1.Event_RunExpired{RunExpired: &runbookv1.RunEnded{Reason: "approvals timed out"}}}
	if s = Fold("R", []*runbookv1.Event{waitApproval, exp}); s.Status != Expired || s.FinalReason != "approvals timed out" || s.WaitingFor != nil {
		t.Fatalf("expired: %+v", s)
	}
}
