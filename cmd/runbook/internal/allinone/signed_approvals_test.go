package allinone_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

const signedPlan = `change_request: {id: CR-SIG, title: "signed approvals", type: maintenance, priority: low}
requester: {name: alice, role: SRE, contact: alice@example.com}
approval:
  technical_approval: {approver: tina}
deploy:
  steps:
    - {name: noop, command: {argv: ["true"]}}
`

// The attacks of issue 11 on the default (authenticated) serve: an
// anonymous client is refused; an unsigned approval, an approval signed by
// one approver naming another, and a replayed signed approval are refused
// and recorded as approval.refused; the right approver's signed approval
// deploys the run to SUCCESS.
func TestSignedApprovals(t *testing.T) {
	p := startPipeline(t, nil)
	url := p.srv.NATSURL()
	ids := p.srv.Identities()
	for name, role := range map[string]trust.Role{"alice": trust.Requester, "tina": trust.Approver, "mallory": trust.Approver} {
		if _, err := ids.Create(name, role, ""); err != nil {
			t.Fatal(err)
		}
	}
	cliAs := func(name string, args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := cli.Execute(context.Background(), append(args, "--nats-url", url, "--creds", ids.SeedPath(name)), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	natstest.Eventually(t, 10*time.Second, "the new identities accepted", func() bool {
		c1, _ := cliAs("mallory", "runs")
		c2, _ := cliAs("tina", "runs")
		return c1 == 0 && c2 == 0
	})

	if nc, err := nats.Connect(url); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("anonymous connect: %v", err)
	}

	dir := t.TempDir() + "/signed.yaml"
	if err := os.WriteFile(dir, []byte(signedPlan), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := cliAs("alice", "submit", dir)
	if code != 0 {
		t.Fatalf("submit: exit %d %s", code, out)
	}
	run := strings.Fields(out)[len(strings.Fields(out))-1]
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "DEPLOY-") {
			run = strings.Trim(f, ":.,")
		}
	}
	p.waitEvent(t, run, "run.waiting", 30*time.Second, nil)
	sha := plan.Hash([]byte(signedPlan))

	// 1. Unsigned, naming tina (published with admin's permissions).
	forged := eventbus.New(run, &runbookv1.Event_ApprovalGranted{ApprovalGranted: &runbookv1.Approval{Role: "technical_approval", Approver: "tina", PlanSha256: sha}}, "forged")
	forged.Actor = "tina"
	if _, err := p.bus.Publish(context.Background(), forged); err != nil {
		t.Fatal(err)
	}
	p.waitEvent(t, run, "approval.refused", 30*time.Second, func(e *runbookv1.Event) bool {
		return strings.Contains(e.GetApprovalRefused().GetReason(), "must be signed")
	})

	// 2. Mallory signs an approval that names tina.
	if code, out := cliAs("mallory", "approve", run, "--role", "technical_approval", "--as", "tina"); code != 0 {
		t.Fatalf("mallory's approval was not even published: exit %d %s", code, out)
	}
	var malloryEv *runbookv1.Event
	p.waitEvent(t, run, "approval.refused", 30*time.Second, func(e *runbookv1.Event) bool {
		return strings.Contains(e.GetApprovalRefused().GetReason(), "was signed by mallory")
	})
	for _, e := range p.history(t, run) {
		if e.GetApprovalGranted() != nil && e.GetSignature() != nil {
			malloryEv = e
		}
	}

	// 3. Mallory's signed event replayed with a new id (same nonce).
	replay := eventbus.New(run, &runbookv1.Event_ApprovalGranted{ApprovalGranted: malloryEv.GetApprovalGranted()}, "replay")
	replay.Signature, replay.Actor, replay.Time = malloryEv.GetSignature(), malloryEv.GetActor(), malloryEv.GetTime()
	if _, err := p.bus.Publish(context.Background(), replay); err != nil {
		t.Fatal(err)
	}
	p.waitEvent(t, run, "approval.refused", 30*time.Second, func(e *runbookv1.Event) bool {
		return strings.Contains(e.GetApprovalRefused().GetReason(), "replayed")
	})
	for _, e := range p.history(t, run) {
		if e.Type == "deploy.started" {
			t.Fatal("the run deployed on a refused approval")
		}
	}

	// 4. Tina's own signed approval deploys it.
	if code, out := cliAs("tina", "approve", run, "--role", "technical_approval"); code != 0 {
		t.Fatalf("tina approve: exit %d %s", code, out)
	}
	if rr := p.report(t, run, 60*time.Second); rr.Status != "SUCCESS" {
		t.Fatalf("ended %s", rr.Status)
	}

	// audit verify re-checks every signature on the stream: the unsigned
	// and the replayed approvals are named, the rest is fine.
	code, out = cliAs("admin", "audit", "verify", "--keyring", ids.KeyringPath())
	if code != 1 {
		t.Fatalf("audit verify: exit %d\n%s", code, out)
	}
	for _, want := range []string{
		run + "/approval.granted/forged (seq", "decision signature: the decision is not signed",
		run + "/approval.granted/replay (seq", "decision signature replayed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("audit verify does not say %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\nrun ") + 1; n != 2 {
		t.Errorf("audit verify names %d problems, want the 2 bad approvals:\n%s", n, out)
	}
}
