package allinone_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
	"github.com/kis-core/runbook/eventbus/natstest"
)

// natsCLI finds the stock nats CLI (.ci/run installs natscli v0.5.0 with
// go install): missing, the test fails under CI=true and is skipped loudly
// otherwise.
func natsCLI(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "nats")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	missing(t, "the nats CLI is not installed: go install github.com/nats-io/natscli/nats@v0.5.0")
	return ""
}

// The attacks of issue 11, made with the stock nats CLI against the
// default `runbook serve` (authentication on), each refused, and a good
// run still ending SUCCESS afterwards.
func TestAttacksWithTheNATSCLI(t *testing.T) {
	bin := natsCLI(t)
	p := startPipeline(t, nil)
	url := p.srv.NATSURL()
	ids := p.srv.Identities()
	made, err := ids.Create("eve", trust.Requester, "")
	if err != nil {
		t.Fatal(err)
	}
	eve := []string{"--nkey", made.SeedPath, "--inbox-prefix", auth.InboxPrefix(made.Identity.PublicKey)}
	nats := func(as []string, args ...string) (string, error) {
		cmd := exec.Command(bin, append(append([]string{"--server", url, "--timeout", "2s", "--no-context"}, as...), args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	natstest.Eventually(t, 10*time.Second, "eve accepted by the server", func() bool {
		_, err := nats(eve, "stream", "info", eventbus.AuditStream, "--json")
		return err == nil
	})

	// Anonymous: nothing at all.
	if out, err := nats(nil, "account", "info"); err == nil || !strings.Contains(strings.ToLower(out), "authorization") {
		t.Fatalf("anonymous account info: err %v\n%s", err, out)
	}

	ctx := context.Background()
	run := p.submit(t, []byte(trivialPlan))
	p.waitFor(t, run, "report.ready")
	before, err := p.bus.JetStream().Stream(ctx, eventbus.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	msgs := before.CachedInfo().State.Msgs

	// A requester may not touch the audit stream or the services' consumers.
	for _, attack := range [][]string{
		{"stream", "edit", eventbus.AuditStream, "--max-msgs", "1", "-f"},
		{"stream", "rm", eventbus.AuditStream, "-f"},
		{"stream", "purge", eventbus.AuditStream, "-f"},
		{"consumer", "rm", eventbus.AuditStream, "tester", "-f"},
	} {
		if out, err := nats(eve, attack...); err == nil {
			t.Errorf("nats %s: succeeded\n%s", strings.Join(attack, " "), out)
		}
	}
	// Nor forge a report or a deploy step's outcome.
	forged := map[string]string{"runbook.FORGED-1.report.ready": "report.ready", "runbook.FORGED-1.deploy.done": "deploy.done"}
	for subject := range forged {
		if out, err := nats(eve, "pub", "--jetstream", subject, `{"id":"x","runId":"FORGED-1"}`, "-H", "Content-Type:application/json"); err == nil {
			t.Errorf("nats pub %s: succeeded\n%s", subject, out)
		}
	}
	// Nor run a command on the host with an unsigned change request.
	marker := filepath.Join(t.TempDir(), "pwned")
	planYAML := "change_request: {id: CR-EVIL, title: evil, type: maintenance, priority: low}\nrequester: {name: eve}\ndeploy:\n  steps:\n    - {name: evil, command: {argv: [sh, -c, 'id > " + marker + "']}}\n"
	body, _ := json.Marshal(map[string]any{"id": "EVIL-1/change.requested", "runId": "EVIL-1", "type": "change.requested",
		"time": time.Now().UTC().Format(time.RFC3339), "changeRequested": map[string]any{"planYaml": planYAML}})
	if out, err := nats(eve, "pub", "--jetstream", "runbook.EVIL-1.change.requested", string(body), "-H", "Content-Type:application/json"); err != nil {
		t.Fatalf("a requester may publish change.requested: %v\n%s", err, out)
	}
	// Not published by a runbook identity's signed client: preflight's
	// consumer dead-letters it, visibly, and nothing runs.
	dl := p.waitEvent(t, "EVIL-1", "event.dead_lettered", 30*time.Second, nil)
	if r := dl.GetEventDeadLettered().GetReason(); !strings.Contains(r, "no publisher signature") {
		t.Fatalf("unsigned change request dead-lettered for %q", r)
	}
	for _, e := range p.history(t, "EVIL-1") {
		if e.Type == "preflight.started" || e.Type == "deploy.started" {
			t.Fatalf("the unsigned change request got to %s", e.Type)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the unsigned change request ran its command")
	}

	// Everything is still there; the forged run has no report; the
	// services still run.
	after, err := p.bus.JetStream().Stream(ctx, eventbus.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	if st := after.CachedInfo(); st.Config.MaxMsgs != -1 || st.State.Msgs < msgs {
		t.Fatalf("audit stream changed: max msgs %d, %d messages (had %d)", st.Config.MaxMsgs, st.State.Msgs, msgs)
	}
	if e, _ := p.bus.LastEvent(ctx, "FORGED-1", "report.ready"); e != nil {
		t.Fatal("a forged report.ready is in the stream")
	}
	good := p.submit(t, []byte(trivialPlan))
	if rr := p.report(t, good, 60*time.Second); rr.Status != "SUCCESS" {
		t.Fatalf("a good run after the attacks ended %s", rr.Status)
	}
}
