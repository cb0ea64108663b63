package allinone_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// runCLI runs the runbook command line against the pipeline.
func (p *pipeline) runCLI(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(args, "--nats-url", p.srv.NATSURL())
	if c := p.srv.Creds("admin"); c != "" {
		args = append(args, "--creds", c) // the test acts as admin
	}
	code = cli.Execute(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// waitEvent waits for an event of run that is of type typ and satisfies ok
// (nil: any), and returns it.
func (p *pipeline) waitEvent(t testing.TB, run, typ string, d time.Duration, ok func(*runbookv1.Event) bool) *runbookv1.Event {
	t.Helper()
	var found *runbookv1.Event
	natstest.Eventually(t, d, typ+" of "+run, func() bool {
		for _, e := range p.history(t, run) {
			if e.Type == typ && (ok == nil || ok(e)) {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

func oneLine(t testing.TB, stderr string) {
	t.Helper()
	if s := strings.TrimSpace(stderr); s == "" || strings.Contains(s, "\n") {
		t.Errorf("stderr should be one line: %q", stderr)
	}
}

const threeRolesPlan = `change_request: {id: CR-APPR, title: "three approvals", type: maintenance, priority: low}
requester: {name: Rita Requester, role: SRE, contact: rita@example.com}
approval:
  timeout: 1h
  technical_approval: {approver: "Tina Tech"}
  business_approval: {approver: "Bob Business"}
  security_approval: {}
deploy:
  steps:
    - {name: noop, command: {argv: ["true"]}}
`

// Issue 3's approvals: with 3 required roles the deploy does not start on
// 2 approvals and starts after the 3rd; a self-approval by the requester is
// refused with a clear error and recorded; so are one person in two roles
// and an approval for another plan (through the CLI and published raw,
// bypassing it); a rejection ends the run REJECTED; approvals that never
// come end it EXPIRED.
func TestApprovalGate(t *testing.T) {
	// Name-based approvals: the --insecure-no-auth mode (signed approvals:
	// signed_approvals_test.go).
	p := startPipeline(t, func(o *allinone.Options) { o.InsecureNoAuth = true })

	t.Run("three roles", func(t *testing.T) {
		t.Parallel()
		run := p.submit(t, []byte(threeRolesPlan))
		p.waitEvent(t, run, "run.waiting", 30*time.Second, func(e *runbookv1.Event) bool {
			return len(e.GetRunWaiting().GetWaitingFor()) == 3 && e.GetRunWaiting().GetDeadline() != nil
		})

		// The requester (the plan's requester.name, any case) cannot approve.
		code, _, errOut := p.runCLI(t, "approve", run, "--role", "security_approval", "--as", "rita requester")
		if code != 5 || !strings.Contains(errOut, "requester cannot approve their own change") || !strings.Contains(errOut, "recorded") {
			t.Fatalf("self-approval: exit %d %q", code, errOut)
		}
		oneLine(t, errOut)
		ref := p.waitEvent(t, run, "approval.refused", 10*time.Second, nil)
		if a := ref.GetApprovalRefused(); a.GetApprover() != "rita requester" || ref.Actor != "rita requester" || !strings.Contains(a.GetReason(), "requester") {
			t.Errorf("recorded refusal: %v", ref)
		}

		code, out, errOut := p.runCLI(t, "approve", run, "--role", "technical_approval", "--as", "Tina Tech", "--comment", "reviewed")
		if code != 0 || !strings.Contains(out, "still waiting for approval by business_approval, security_approval") {
			t.Fatalf("technical: exit %d %q %q", code, out, errOut)
		}
		if code, out, errOut = p.runCLI(t, "approve", run, "--role", "business_approval", "--as", "BOB  business"); code != 0 {
			t.Fatalf("business: exit %d %q %q", code, out, errOut)
		}
		// One person, two roles.
		code, _, errOut = p.runCLI(t, "approve", run, "--role", "security_approval", "--as", "Tina Tech")
		if code != 5 || !strings.Contains(errOut, "one person cannot fill two roles") {
			t.Fatalf("two roles: exit %d %q", code, errOut)
		}
		// Not the approver the plan names.
		code, _, errOut = p.runCLI(t, "approve", run, "--role", "technical_approval", "--as", "Mallory")
		if code != 5 || !strings.Contains(errOut, `the plan names "Tina Tech"`) {
			t.Fatalf("named approver: exit %d %q", code, errOut)
		}
		// Another plan: through the CLI...
		other := plan.Hash([]byte(threeRolesPlan + "# changed\n"))
		code, _, errOut = p.runCLI(t, "approve", run, "--role", "security_approval", "--as", "Sam Sec", "--plan-sha256", other)
		if code != 5 || !strings.Contains(errOut, "an approval binds to the exact plan") {
			t.Fatalf("other plan: exit %d %q", code, errOut)
		}
		// ...and published raw, bypassing the CLI: the deployer refuses it.
		raw := eventbus.New(run, &runbookv1.Event_ApprovalGranted{ApprovalGranted: &runbookv1.Approval{
			Role: "security_approval", Approver: "Sam Sec", PlanSha256: other,
		}}, "raw")
		raw.Actor = "Sam Sec"
		if _, err := p.bus.Publish(context.Background(), raw); err != nil {
			t.Fatal(err)
		}
		p.waitEvent(t, run, "approval.refused", 15*time.Second, func(e *runbookv1.Event) bool {
			return e.Id == run+"/approval.refused/of/approval.granted/raw" && strings.Contains(e.GetApprovalRefused().GetReason(), "binds to the exact plan")
		})
		p.waitEvent(t, run, "run.waiting", 15*time.Second, func(e *runbookv1.Event) bool {
			w := e.GetRunWaiting().GetWaitingFor()
			return len(w) == 1 && w[0] == "security_approval"
		})
		// Two valid approvals (and everything refused): no deploy.
		if i := index(p.history(t, run), "deploy.started"); i >= 0 {
			t.Fatalf("deploy started with 2 of 3 approvals: %v", types(p.history(t, run)))
		}
		code, out, _ = p.runCLI(t, "runs", "--waiting")
		if code != 0 || !strings.Contains(out, run) || !strings.Contains(out, "AWAITING_APPROVAL") || !strings.Contains(out, "approval: security_approval") {
			t.Errorf("runs --waiting: exit %d\n%s", code, out)
		}
		// Approving again changes nothing.
		code, out, _ = p.runCLI(t, "approve", run, "--role", "technical_approval", "--as", "tina tech")
		if code != 0 || !strings.Contains(out, "nothing new was published") {
			t.Errorf("repeat: exit %d %q", code, out)
		}

		code, out, errOut = p.runCLI(t, "approve", run, "--role", "security_approval", "--as", "Sam Sec")
		if code != 0 || !strings.Contains(out, "the deploy starts now") {
			t.Fatalf("third approval: exit %d %q %q", code, out, errOut)
		}
		rr := p.report(t, run, 30*time.Second)
		evs := p.history(t, run)
		if rr.Status != "SUCCESS" {
			t.Fatalf("ended %s: %v", rr.Status, types(evs))
		}
		noDuplicateIDs(t, evs)
		var lastGranted, started, refused int
		granted := map[string]int{}
		for i, e := range evs {
			switch e.Type {
			case "approval.granted":
				granted[e.GetApprovalGranted().GetRole()]++
				lastGranted = i
			case "deploy.started":
				started = i
			case "approval.refused":
				refused++
			}
		}
		if started < lastGranted {
			t.Errorf("deploy.started (%d) before the last approval (%d): %v", started, lastGranted, types(evs))
		}
		if granted["technical_approval"] != 1 || granted["business_approval"] != 1 || granted["security_approval"] != 2 {
			t.Errorf("approval.granted by role %v (security: the raw one and the real one)", granted)
		}
		if refused != 5 {
			t.Errorf("%d approval.refused, want 5 (self, two roles, named, other plan by CLI, raw)", refused)
		}
		// Too late now.
		code, _, errOut = p.runCLI(t, "reject", run, "--role", "security_approval", "--as", "Sam Sec", "--reason", "late")
		if code != 6 || !strings.Contains(errOut, "already ended SUCCESS") {
			t.Errorf("reject after the end: exit %d %q", code, errOut)
		}
	})

	t.Run("rejection", func(t *testing.T) {
		t.Parallel()
		run := p.submit(t, []byte(strings.Replace(threeRolesPlan, "CR-APPR", "CR-REJ", 1)))
		p.waitEvent(t, run, "run.waiting", 30*time.Second, nil)
		code, _, errOut := p.runCLI(t, "reject", run, "--role", "business_approval", "--as", "Mallory", "--reason", "no")
		if code != 5 || !strings.Contains(errOut, `the plan names "Bob Business"`) {
			t.Fatalf("reject by the wrong person: exit %d %q", code, errOut)
		}
		code, out, errOut := p.runCLI(t, "reject", run, "--role", "business_approval", "--as", "Bob Business", "--reason", "not during the sale")
		if code != 0 || !strings.Contains(out, "REJECTED") {
			t.Fatalf("reject: exit %d %q %q", code, out, errOut)
		}
		rr := p.report(t, run, 30*time.Second)
		evs := p.history(t, run)
		if rr.Status != "REJECTED" {
			t.Fatalf("ended %s: %v", rr.Status, types(evs))
		}
		if !strings.Contains(rr.QcSummary, "Bob Business") || !strings.Contains(rr.QcSummary, "not during the sale") {
			t.Errorf("the report does not say who rejected and why:\n%s", rr.QcSummary)
		}
		if index(evs, "deploy.started") >= 0 {
			t.Errorf("a rejected run deployed: %v", types(evs))
		}
		code, _, errOut = p.runCLI(t, "approve", run, "--role", "security_approval", "--as", "Sam Sec")
		if code != 6 || !strings.Contains(errOut, "already ended REJECTED") {
			t.Errorf("approve a rejected run: exit %d %q", code, errOut)
		}
	})

	t.Run("approvals that never come", func(t *testing.T) {
		t.Parallel()
		run := p.submit(t, []byte(strings.NewReplacer("CR-APPR", "CR-EXP", "timeout: 1h", "timeout: 2s").Replace(threeRolesPlan)))
		rr := p.report(t, run, 30*time.Second)
		evs := p.history(t, run)
		if rr.Status != "EXPIRED" {
			t.Fatalf("ended %s: %v", rr.Status, types(evs))
		}
		exp := evs[index(evs, "run.expired")]
		if r := exp.GetRunExpired().GetReason(); !strings.Contains(r, "approvals timed out") || !strings.Contains(r, "within 2s") {
			t.Errorf("run.expired says %q", r)
		}
		pass := evs[index(evs, "preflight.passed")]
		if d := exp.GetTime().AsTime().Sub(pass.GetTime().AsTime()); d < 2*time.Second {
			t.Errorf("expired %v after pre-flight passed, before the 2s timeout", d)
		}
		if index(evs, "deploy.started") >= 0 {
			t.Errorf("an expired run deployed: %v", types(evs))
		}
	})
}
