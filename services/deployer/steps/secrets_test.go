package steps_test

import (
	"context"
	"encoding/base64"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/services/deployer/steps"
)

// A value the plan names in a place that has nothing to do with the step
// — the report's Slack webhook — printed by a deploy step is redacted from
// the step's result and from the output its redactor filters, once the
// executor is ForPlan; without ForPlan it would be shown.
func TestStepRedactsEverySecretOfThePlan(t *testing.T) {
	t.Parallel()
	const webhook = "https://hooks.slack.com/services/T0/B0/step-webhook-secret"
	env := func(n string) (string, bool) { return webhook, n == "SLACK_WEBHOOK_URL" }
	p := &plan.Plan{Report: plan.Report{Notify: []plan.Notify{{Slack: &plan.SlackNotify{WebhookEnv: "SLACK_WEBHOOK_URL"}}}}}
	// HOOK is no secret-looking name: only the plan-wide rule hides it.
	st := plan.Step{Name: "announce", Command: &plan.Command{
		Argv: []string{"sh", "-c", `echo "posting to $HOOK"; printf '%s' "$HOOK" | base64 -w0; echo; echo "{\"url\":\"$HOOK\"}" >&2; exit 1`},
		Env:  map[string]string{"HOOK": webhook},
	}}
	base := &steps.Executor{Env: env, BaseEnv: []string{"PATH=/usr/bin:/bin"}}

	plain := base.RunOutput(context.Background(), st, nil, nil)
	if !strings.Contains(plain.OutputTail, webhook) {
		t.Fatalf("premise: without ForPlan the step's output shows the value: %q", plain.OutputTail)
	}

	x := base.ForPlan(p)
	var mu sync.Mutex
	var streamed strings.Builder
	res := x.RunOutput(context.Background(), st, nil, func(_ string, b []byte) {
		mu.Lock()
		defer mu.Unlock()
		streamed.Write(b)
	})
	mu.Lock()
	live := x.Secrets(st).Redact(streamed.String())
	mu.Unlock()
	b64 := base64.StdEncoding.EncodeToString([]byte(webhook))
	for what, s := range map[string]string{"output tail": res.OutputTail, "error": res.Err.Error(), "live output": live} {
		for _, form := range []string{webhook, b64[:40], "step-webhook-secret"} {
			if strings.Contains(s, form) {
				t.Errorf("%s shows the webhook (%q): %q", what, form, s)
			}
		}
	}
	if n := strings.Count(res.OutputTail, "[REDACTED:SLACK_WEBHOOK_URL]"); n != 3 {
		t.Errorf("%d redactions in %q, want 3 (plain, base64, JSON)", n, res.OutputTail)
	}
}

// A health check sends its headers_env; when the endpoint echoes the value
// (here into a redirect that then fails, so that net/http's error quotes
// the URL) the health result does not show it.
func TestHealthSendsHeadersAndRedactsThem(t *testing.T) {
	t.Parallel()
	const token = "health-token-Qx93-secret"
	env := func(n string) (string, bool) { return token, n == "HEALTH_TOKEN" }
	// dead accepts and hangs up: the redirect to it fails with its URL.
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
	var mu sync.Mutex
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Get("X-Health-Token")
		mu.Unlock()
		http.Redirect(w, r, "http://"+dead.Addr().String()+"/login?token="+r.Header.Get("X-Health-Token"), http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	h := plan.HealthCheck{URL: srv.URL + "/health", HeadersEnv: map[string]string{"X-Health-Token": "HEALTH_TOKEN"}}
	p := &plan.Plan{Deploy: plan.Deploy{Health: []plan.HealthCheck{h}}}
	x := (&steps.Executor{HTTP: &http.Client{}, Env: env}).ForPlan(p)
	res := x.Health(context.Background(), h)
	mu.Lock()
	sent := got
	mu.Unlock()
	if sent != token {
		t.Fatalf("the health endpoint got X-Health-Token %q, want the variable's value", sent)
	}
	if res.Err == nil || !strings.Contains(res.Err.Error(), "UNHEALTHY") {
		t.Fatalf("result %+v, want UNHEALTHY", res)
	}
	msg := res.Err.Error() + res.OutputTail
	if strings.Contains(msg, token) || !strings.Contains(msg, "token=[REDACTED:HEALTH_TOKEN]") {
		t.Fatalf("health result %q: want the echoed value redacted", msg)
	}

	// A variable that is not set: said, not sent.
	x = (&steps.Executor{HTTP: &http.Client{}, Env: func(string) (string, bool) { return "", false }}).ForPlan(p)
	if res := x.Health(context.Background(), h); res.Err == nil || !strings.Contains(res.Err.Error(), "environment variable HEALTH_TOKEN is NOT SET") {
		t.Fatalf("unset variable: %+v", res)
	}
}
