package allinone_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus/natstest"
)

const slowPlan = `change_request: {id: CR-C, title: "control", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
rollback_plan:
  rollback_steps:
    - {name: undo, command: {argv: ["true"]}}
deploy:
  steps:
    - {name: slow, command: {argv: [sleep, "600"]}}
`

const waitingPlan = `change_request: {id: CR-W, title: "waits for approval", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
approval:
  technical_approval: {approver: Lead Architect}
deploy:
  steps:
    - {name: noop, command: {argv: ["true"]}}
`

func runCLI(t *testing.T, url, creds string, args ...string) (int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Execute(context.Background(), append(args, "--nats-url", url, "--creds", creds), &out, &errOut)
	return code, out.String() + errOut.String()
}

// runbook rollback during a running step: the step is cancelled and the
// run rolled back; runbook cancel before ACT ends the run CANCELLED; both
// refuse a run that already ended.
func TestOperatorRollbackAndCancel(t *testing.T) {
	p := startPipeline(t, nil)
	url := p.srv.NATSURL()
	// The operator is a requester of the keyring: signed cancel and rollback.
	if _, err := p.srv.Identities().Create("oncall", trust.Requester, ""); err != nil {
		t.Fatal(err)
	}
	creds := p.srv.Identities().SeedPath("oncall")
	natstest.Eventually(t, 10*time.Second, "oncall accepted by the server", func() bool {
		code, _ := runCLI(t, url, creds, "runs")
		return code == 0
	})

	run := p.submit(t, []byte(slowPlan))
	p.waitFor(t, run, "deploy.step.started")
	start := time.Now()
	if code, out := runCLI(t, url, creds, "rollback", run, "--reason", "customers report errors", "--as", "oncall"); code != 0 {
		t.Fatalf("rollback: exit %d %s", code, out)
	}
	rr := p.report(t, run, 30*time.Second)
	if rr.Status != "ROLLED_BACK" || !strings.Contains(rr.QcSummary, "customers report errors") {
		t.Fatalf("ended %s:\n%s", rr.Status, rr.QcSummary)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("rollback of a running sleep 600 took %s", d)
	}
	if code, out := runCLI(t, url, creds, "rollback", run, "--reason", "again"); code != 6 || !strings.Contains(out, "already ended ROLLED_BACK") {
		t.Fatalf("rollback of an ended run: exit %d %s", code, out)
	}

	waiting := p.submit(t, []byte(waitingPlan))
	p.waitFor(t, waiting, "run.waiting")
	if code, out := runCLI(t, url, creds, "cancel", waiting, "--reason", "window moved", "--as", "oncall"); code != 0 {
		t.Fatalf("cancel: exit %d %s", code, out)
	}
	rr = p.report(t, waiting, 30*time.Second)
	if rr.Status != "CANCELLED" || !strings.Contains(rr.QcSummary, "window moved") {
		t.Fatalf("cancelled run ended %s:\n%s", rr.Status, rr.QcSummary)
	}
	if c := countType(p.history(t, waiting), "deploy.started"); c != 0 {
		t.Fatalf("a cancelled run deployed")
	}
}
