package notify_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/services/reporter/notify"
)

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		d    plan.Notify
		want string
	}{
		{plan.Notify{Slack: &plan.SlackNotify{WebhookEnv: "SLACK_WEBHOOK_URL"}}, "slack:SLACK_WEBHOOK_URL"},
		{plan.Notify{Webhook: &plan.WebhookNotify{URL: "https://hooks.example.com/runbook"}}, "webhook:https://hooks.example.com/runbook"},
		{plan.Notify{Email: &plan.EmailNotify{SMTPEnv: "SMTP_URL", To: []string{"a@x.io", "b@x.io"}}}, "email:SMTP_URL:a@x.io,b@x.io"},
		{plan.Notify{}, ""},
	} {
		if got := notify.Key(tc.d); got != tc.want {
			t.Errorf("Key(%+v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, prefix, secret string }{
		{"https://hooks.example.com/runbook", "https://hooks.example.com/runbook", ""},
		{"https://user:s3cret@hooks.example.com/x", "https://hooks.example.com/x#", "s3cret"},
		{"https://hooks.example.com/x?token=s3cret", "https://hooks.example.com/x#", "s3cret"},
	} {
		got := notify.RedactURL(tc.in)
		if !strings.HasPrefix(got, tc.prefix) || (tc.secret != "" && strings.Contains(got, tc.secret)) {
			t.Errorf("RedactURL(%q) = %q, want prefix %q without %q", tc.in, got, tc.prefix, tc.secret)
		}
	}
	if notify.RedactURL("https://h/x?token=a") == notify.RedactURL("https://h/x?token=b") {
		t.Error("two URLs differing in their query must stay two destinations")
	}
}

func TestServerDestinations(t *testing.T) {
	for _, tc := range []struct {
		name              string
		slack, hook, smtp string
		to                []string
		wantKeys          []string
		wantErr           string
	}{
		{name: "none"},
		{name: "all", slack: "SLACK_WEBHOOK_URL", hook: "https://hooks.example.com/r", smtp: "SMTP_URL", to: []string{"ops@example.com", " lead@example.com"},
			wantKeys: []string{"slack:SLACK_WEBHOOK_URL", "webhook:https://hooks.example.com/r", "email:SMTP_URL:ops@example.com,lead@example.com"}},
		{name: "slack URL instead of env name", slack: "https://hooks.slack.com/services/T/B/X", wantErr: "--notify-slack-env"},
		{name: "webhook not http", hook: "ftp://x/y", wantErr: "--notify-webhook"},
		{name: "to without smtp", to: []string{"ops@example.com"}, wantErr: "needs --notify-smtp-env"},
		{name: "smtp without to", smtp: "SMTP_URL", wantErr: "needs --notify-email-to"},
		{name: "bad address", smtp: "SMTP_URL", to: []string{"ops.example.com"}, wantErr: `"ops.example.com" is not an e-mail address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := notify.ServerDestinations(tc.slack, tc.hook, tc.smtp, tc.to)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "/T/B/X") {
					t.Fatalf("the error repeats the secret URL: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, d := range got {
				keys = append(keys, notify.Key(d))
			}
			if strings.Join(keys, " ") != strings.Join(tc.wantKeys, " ") {
				t.Fatalf("keys = %v, want %v", keys, tc.wantKeys)
			}
		})
	}
}

func TestParseSMTPURL(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    notify.SMTPConfig
		wantErr string
	}{
		{in: "smtp://u:p%40ss@mail.example.com:2525?from=runbook@example.com",
			want: notify.SMTPConfig{Host: "mail.example.com", Port: "2525", User: "u", Password: "p@ss", From: "runbook@example.com"}},
		{in: "smtp://mail.example.com", want: notify.SMTPConfig{Host: "mail.example.com", Port: "25", From: "runbook@localhost"}},
		{in: "smtps://mail.example.com", want: notify.SMTPConfig{TLS: true, Host: "mail.example.com", Port: "465", From: "runbook@localhost"}},
		{in: "http://u:secret@mail.example.com", wantErr: `scheme "http"`},
		{in: "smtp://u:secret@:25", wantErr: "no host"},
	} {
		got, err := notify.ParseSMTPURL(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "secret") {
				t.Errorf("ParseSMTPURL(%q) err = %v, want %q without the password", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSMTPURL(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestDelay(t *testing.T) {
	base, maxD := time.Second, 5*time.Second
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 5 * time.Second}, {10, 5 * time.Second}} {
		if got := notify.Delay(tc.n, base, maxD, errors.New("x")); got != tc.want {
			t.Errorf("Delay(%d) = %s, want %s", tc.n, got, tc.want)
		}
	}
}

// TestHTTPRetryClassification: which answers are worth another attempt.
func TestHTTPRetryClassification(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Idempotency-Key") != "RUN/slack:S" || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		code := map[string]int{"/ok": 200, "/accepted": 202, "/500": 500, "/503": 503, "/429": 429, "/400": 400, "/404": 404}[r.URL.Path]
		if code == 429 {
			w.Header().Set("Retry-After", "3")
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		path      string
		ok, retry bool
	}{
		{"/ok", true, false}, {"/accepted", true, false},
		{"/500", false, true}, {"/503", false, true}, {"/429", false, true},
		{"/400", false, false}, {"/404", false, false},
	} {
		err := notify.PostJSON(context.Background(), srv.Client(), srv.URL+tc.path, "env:S", []byte(`{}`), "RUN/slack:S", nil)
		if (err == nil) != tc.ok || (err != nil && notify.Retryable(err) != tc.retry) {
			t.Errorf("%s: err = %v (retryable %v), want ok=%v retry=%v", tc.path, err, notify.Retryable(err), tc.ok, tc.retry)
		}
		if err != nil && strings.Contains(err.Error(), srv.URL) {
			t.Errorf("%s: the error names the URL, not the target: %v", tc.path, err)
		}
		if tc.path == "/429" {
			if d := notify.Delay(1, time.Second, time.Minute, err); d != 3*time.Second {
				t.Errorf("429 with Retry-After: 3 waits %s, want 3s", d)
			}
		}
	}
	// Nothing listening: a network error, worth retrying.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	if err := notify.PostJSON(context.Background(), http.DefaultClient, dead.URL, "env:S", nil, "k", nil); err == nil || !notify.Retryable(err) {
		t.Errorf("connection refused: err = %v, want a retryable error", err)
	}
}
