package deployer_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	"github.com/kis-core/runbook/services/deployer"
)

// startEnv starts the deployer reading *_env variables from env.
func startEnv(t *testing.T, env map[string]string) *harness {
	t.Helper()
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	ctx, cancel := context.WithCancel(context.Background())
	svc := deployer.New(natstest.Bus(t, s, "deployer"), deployer.Options{
		Consumer: eventbus.ConsumerOptions{Backoff: []time.Duration{20 * time.Millisecond}},
		Env:      func(n string) (string, bool) { v, ok := env[n]; return v, ok },
	}, testLog(t), nil, nil)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &harness{bus: bus, log: filepath.Join(t.TempDir(), "ran.log")}
}

// runEvents is the run's events but its change.requested (the plan text
// the operator wrote), as JSON.
func runEvents(t *testing.T, h *harness, run string) string {
	t.Helper()
	hist, err := h.bus.RunHistory(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range hist {
		if e.Event.GetType() == "change.requested" {
			continue
		}
		j, _ := protojson.Marshal(e.Event)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// The report's Slack webhook (report.notify[].slack.webhook_env) printed
// by a deploy step is redacted in the step's output events and outcome,
// though the step itself names no *_env field.
func TestNotifyWebhookSecretRedactedInStepOutput(t *testing.T) {
	t.Parallel()
	const webhook = "https://hooks.slack.com/services/T1/B1/deploy-webhook-secret"
	h := startEnv(t, map[string]string{"SLACK_WEBHOOK_URL": webhook})
	p := planWith(h.log, fmt.Sprintf(`    - name: announce
      command:
        argv: [sh, -c, 'echo "notifying $HOOK"']
        env: {HOOK: %q}
`, webhook), step("undo", "")) + `report:
  notify:
    - slack: {webhook_env: SLACK_WEBHOOK_URL}
`
	h.publish(t, changeRequested("NW1", p), preflightPassed("NW1"))
	h.waitFor(t, "NW1", "deploy.done")
	outs, _, _ := outputOf(t, h, "NW1")
	var text string
	for _, e := range outs {
		text += e.Event.GetDeployStepOutput().GetText()
	}
	if text != "notifying [REDACTED:SLACK_WEBHOOK_URL]\n" {
		t.Fatalf("step output %q, want the webhook redacted", text)
	}
	if all := runEvents(t, h, "NW1"); strings.Contains(all, "deploy-webhook-secret") {
		t.Fatalf("the webhook is in the run's events:\n%s", all)
	}
}

// A health check's header secret (deploy.health[].headers_env), echoed by
// the health endpoint into a failing redirect, is in no health result: the
// failed health step, deploy.failed, the rollback request.
func TestHealthHeaderSecretNotInHealthResult(t *testing.T) {
	t.Parallel()
	const token = "health-hdr-Lm42-secret"
	h := startEnv(t, map[string]string{"HEALTH_TOKEN": token})
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dead.Close() })
	go func() {
		for {
			c, err := dead.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+dead.Addr().String()+"/login?token="+r.Header.Get("X-Health-Token"), http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	p := planWith(h.log, step("one", ""), step("undo", "")) + fmt.Sprintf(`  health:
    - {url: "%s/health", attempts: 2, interval: 10ms, initial_delay: 0s, timeout: 2s, headers_env: {X-Health-Token: HEALTH_TOKEN}}
`, srv.URL)
	h.publish(t, changeRequested("HH1", p), preflightPassed("HH1"))
	h.waitFor(t, "HH1", "rollback.done")
	all := runEvents(t, h, "HH1")
	if strings.Contains(all, token) {
		t.Fatalf("the health header's value is in the run's events:\n%s", all)
	}
	f, _ := h.bus.LastEvent(context.Background(), "HH1", "deploy.failed")
	if f == nil || !strings.Contains(f.Event.GetDeployFailed().GetError(), "token=[REDACTED:HEALTH_TOKEN]") {
		t.Fatalf("deploy.failed %v: want the echoed value shown redacted (else the test proves nothing)", f)
	}
}
