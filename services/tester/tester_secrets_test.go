package tester_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
)

// A secret the plan names anywhere — here the Slack webhook of its report —
// never appears in a test result, even when the release under test answers
// with it: the tester hides the value of every variable plan.SecretEnv
// lists, not only the ${env:…} its requests use.
func TestPlanSecretsNeverInTestResults(t *testing.T) {
	t.Parallel()
	const webhook = "https://hooks.slack.com/services/T000/B000/zz-webhook-secret"
	h := startEnv(t, map[string]string{"SLACK_WEBHOOK_URL": webhook})
	leaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Config", webhook)
		_, _ = fmt.Fprintf(w, `{"webhook":%q}`, webhook)
	}))
	t.Cleanup(leaky.Close)
	h.submit("leak", fmt.Sprintf(`
change_request: {id: CR-T-S, title: secrets stay home}
report:
  notify:
    - slack: {webhook_env: SLACK_WEBHOOK_URL}
test:
  rollback_on_failure: false
  smoke:
    - name: Config Echo
      request: {url: "%s/config"}
      expect: {status: 200, json: {webhook: "https://example.com/expected"}, headers: {X-Config: other}, body_contains: [nothing-like-this]}
`, leaky.URL))
	h.deployDone("leak")
	evs := h.waitFor("leak", "test.passed", "test.failed")
	var all strings.Builder
	for _, e := range evs {
		if e.GetType() == "change.requested" {
			continue
		}
		b, _ := protojson.Marshal(e)
		all.Write(b)
	}
	for _, form := range []string{webhook, "zz-webhook-secret", "hooks.slack.com/services"} {
		if strings.Contains(all.String(), form) {
			t.Fatalf("the webhook secret (%q) is in the run's events:\n%s", form, all.String())
		}
	}
	f := find(evs, "test.smoke.failed")
	if f == nil {
		t.Fatalf("no test.smoke.failed: %v", types(evs))
	}
	c := f.GetTestSmokeFailed().GetTests()[0]
	if !strings.Contains(c.GetError(), "[env:SLACK_WEBHOOK_URL]") {
		t.Fatalf("error %q: the echoed value was not shown redacted; the test proves nothing", c.GetError())
	}
}
