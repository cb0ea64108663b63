package plan

import (
	"strings"
	"testing"
	"time"
)

// The approval section's reserved timeout key and the change window's end:
// what the deployer's gate reads from a plan.
func TestApprovalTimeoutAndWindowEnd(t *testing.T) {
	t.Parallel()
	const head = "change_request: {id: CR-1, title: t, type: maintenance, priority: low}\nrequester: {name: Rita, role: SRE}\n"
	good := head + `timeline:
  planned_start: "2025-09-23T02:00:00Z"
  window_end: "2025-09-23T04:00:00Z"
approval:
  timeout: 4h
  technical_approval: {approver: "Tina Tech"}
  business_approval: {approver: "Bob"}
`
	p, issues := Parse("p.yaml", []byte(good))
	if p == nil {
		t.Fatalf("valid plan refused: %v", issues)
	}
	if p.ApprovalTimeout.Duration != 4*time.Hour || p.ApprovalTimeout.Raw != "4h" {
		t.Errorf("approval timeout %+v", p.ApprovalTimeout)
	}
	if _, isRole := p.Approval["timeout"]; isRole || len(p.Approval) != 2 {
		t.Errorf("timeout must not be a role: %v", p.Approval)
	}
	if p.Timeline.WindowEnd != "2025-09-23T04:00:00Z" {
		t.Errorf("window end %q", p.Timeline.WindowEnd)
	}

	cases := []struct {
		name, yaml, path, msg string
		line                  int
	}{
		{"timeout not a duration", head + "approval:\n  timeout: soon\n", "approval.timeout", "not a duration", 4},
		{"timeout zero", head + "approval:\n  timeout: 0s\n", "approval.timeout", "zero", 4},
		{"timeout a mapping", head + "approval:\n  timeout: {approver: x}\n", "approval.timeout", "duration", 4},
		{"window end not RFC 3339", head + "timeline:\n  window_end: tomorrow\n", "timeline.window_end", "RFC 3339", 4},
		{"window end before start", head + "timeline:\n  planned_start: \"2025-09-23T02:00:00Z\"\n  window_end: \"2025-09-23T01:00:00Z\"\n", "timeline.window_end", "must be after planned_start", 5},
		{"window end equals start", head + "timeline:\n  planned_start: \"2025-09-23T02:00:00Z\"\n  window_end: \"2025-09-23T02:00:00Z\"\n", "timeline.window_end", "must be after planned_start", 5},
		{"requester named approver", head + "approval:\n  technical_approval: {approver: \"rita\"}\n", "approval.technical_approval.approver", "requester cannot approve", 4},
		{"one approver two roles", head + "approval:\n  a_approval: {approver: \"Tina  Tech\"}\n  b_approval: {approver: \"tina tech\"}\n", "approval.b_approval.approver", "two roles", 5},
		{"window end typo", head + "timeline:\n  window_ends: \"2025-09-23T01:00:00Z\"\n", "timeline.window_ends", "did you mean \"window_end\"", 4},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, issues := Parse("p.yaml", []byte(c.yaml))
			if p != nil {
				t.Fatalf("accepted: %v", issues)
			}
			for _, i := range errorsOf(issues) {
				if i.Path == c.path && strings.Contains(i.Message, c.msg) && i.Line == c.line {
					return
				}
			}
			t.Fatalf("no error at %s line %d containing %q: %v", c.path, c.line, c.msg, issues)
		})
	}
}
