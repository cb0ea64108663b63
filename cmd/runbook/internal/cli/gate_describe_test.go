package cli_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// What `runbook watch` prints for the gate's events.
func TestDescribeGate(t *testing.T) {
	at := time.Date(2025, 9, 23, 2, 0, 0, 0, time.UTC)
	local := at.Format(time.RFC3339) // sentences say UTC
	cases := []struct {
		payload any
		want    string
	}{
		{&runbookv1.Event_RunWaiting{RunWaiting: &runbookv1.RunWaiting{WaitingFor: []string{"business_approval", "security_approval"}, Deadline: timestamppb.New(at)}},
			"⏸ waiting for approval by business_approval, security_approval; expires at " + local},
		{&runbookv1.Event_RunWaiting{RunWaiting: &runbookv1.RunWaiting{WaitingFor: []string{"change_window"}, Until: timestamppb.New(at)}},
			"⏸ waiting for the change window until " + local},
		{&runbookv1.Event_RunWaiting{RunWaiting: &runbookv1.RunWaiting{WaitingFor: []string{"a"}, Until: timestamppb.New(at)}},
			"⏸ waiting for approval by a; the window opens at " + local},
		{&runbookv1.Event_ApprovalGranted{ApprovalGranted: &runbookv1.Approval{Role: "technical_approval", Approver: "Tina", Comment: "reviewed"}},
			"✔ approved as technical_approval by Tina — reviewed"},
		{&runbookv1.Event_ApprovalRejected{ApprovalRejected: &runbookv1.Approval{Role: "business_approval", Approver: "Bob", Reason: "not during the sale"}},
			"✗ REJECTED as business_approval by Bob — not during the sale"},
		{&runbookv1.Event_ApprovalRefused{ApprovalRefused: &runbookv1.Approval{Role: "security_approval", Approver: "Rita", Reason: "Rita requested this change: the requester cannot approve their own change"}},
			"⚠ approval refused: Rita as security_approval — Rita requested this change"},
		{&runbookv1.Event_RunExpired{RunExpired: &runbookv1.RunEnded{Reason: "approvals timed out"}}, "✗ EXPIRED: approvals timed out"},
	}
	for _, c := range cases {
		phase, text := cli.Describe(eventbus.New("R", c.payload))
		if phase != "GATE" || !strings.Contains(text, c.want) {
			t.Errorf("%T: %s %q, want GATE containing %q", c.payload, phase, text, c.want)
		}
	}
}
