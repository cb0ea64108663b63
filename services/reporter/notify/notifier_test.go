package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter/notify"
)

// ---- a real SMTP listener (go-smtp, server side) ----

type mailMsg struct {
	from       string
	to         []string
	data       []byte
	user, pass string
}

type smtpSink struct {
	mu   sync.Mutex
	msgs []mailMsg
	addr string
}

func startSMTP(t *testing.T) *smtpSink {
	t.Helper()
	sink := &smtpSink{}
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &smtpSession{sink: sink}, nil }))
	s.Domain = "localhost"
	s.AllowInsecureAuth = true // PLAIN over a loopback connection, as net/smtp allows
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sink.addr = l.Addr().String()
	go func() { _ = s.Serve(l) }()
	t.Cleanup(func() { _ = s.Close() })
	return sink
}

func (s *smtpSink) messages() []mailMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mailMsg(nil), s.msgs...)
}

type smtpSession struct {
	sink *smtpSink
	cur  mailMsg
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "runbook" || pass != "s3cret-pass" {
			return errors.New("bad credentials")
		}
		s.cur.user, s.cur.pass = user, pass
		return nil
	}), nil
}
func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error { s.cur.from = from; return nil }
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}
func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = b
	s.sink.mu.Lock()
	s.sink.msgs = append(s.sink.msgs, s.cur)
	s.sink.mu.Unlock()
	s.cur = mailMsg{user: s.cur.user, pass: s.cur.pass}
	return nil
}
func (s *smtpSession) Reset()        {}
func (s *smtpSession) Logout() error { return nil }

// ---- HTTP receivers (httptest) ----

type request struct {
	path, key, runHeader string
	body                 []byte
}

type receiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []request
	// answer gives the status of the n-th request (0-based) with this
	// Idempotency-Key.
	answer func(n int) int
}

func startReceiver(t *testing.T, answer func(n int) int) *receiver {
	t.Helper()
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		n := 0
		for _, q := range rc.reqs {
			if q.key == r.Header.Get("Idempotency-Key") {
				n++
			}
		}
		rc.reqs = append(rc.reqs, request{path: r.URL.Path, key: r.Header.Get("Idempotency-Key"), runHeader: r.Header.Get("X-Runbook-Run-Id"), body: body})
		rc.mu.Unlock()
		w.WriteHeader(rc.answer(n))
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) requests(key string) []request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []request
	for _, q := range rc.reqs {
		if key == "" || q.key == key {
			out = append(out, q)
		}
	}
	return out
}

func always(code int) func(int) int { return func(int) int { return code } }

// ---- runs ----

func planWithNotify(hookURL string) string {
	return fmt.Sprintf(`change_request: {id: CR-2025-001, title: "Order API v2", type: enhancement, priority: medium}
requester: {name: Kim Operator, role: DevOps, contact: ops@example.com}
report:
  notify:
    - slack: {webhook_env: SLACK_HOOK}
    - webhook: {url: %q}
    - email: {smtp_env: SMTP_URL, to: [ops@example.com, lead@example.com]}
`, hookURL)
}

func publish(t *testing.T, bus *eventbus.Bus, evs ...*runbookv1.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ev := range evs {
		if _, err := bus.Publish(ctx, ev); err != nil {
			t.Fatalf("publish %s: %v", ev.GetType(), err)
		}
	}
}

// publishRun publishes a run's change.requested and its report.ready.
func publishRun(t *testing.T, bus *eventbus.Bus, runID, planYAML, status string, issues int) string {
	t.Helper()
	if _, errs := plan.Parse("plan.yaml", []byte(planYAML)); plan.HasErrors(errs) {
		t.Fatalf("test plan invalid: %v", errs)
	}
	req := eventbus.New(runID, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		PlanYaml: planYAML, PlanSource: "plan.yaml", ChangeId: "CR-2025-001", Requester: "Kim Operator"}})
	req.Actor = "kim"
	rj := reportJSON(t, runID, status, "kim", issues)
	ready := eventbus.New(runID, &runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{
		Status: status, ReportJson: rj, QcSummary: qc}})
	publish(t, bus, req, ready)
	return rj
}

type outcome struct {
	typ string
	n   *runbookv1.Notification
	raw []byte
}

// outcomes reads the notification events of a run from the stream.
func outcomes(t *testing.T, bus *eventbus.Bus, runID string) []outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := bus.RunHistory(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	var out []outcome
	for _, e := range h {
		raw, _ := eventbus.Encode(e.Event)
		if n := e.Event.GetNotificationSent(); n != nil {
			out = append(out, outcome{"notification.sent", n, raw})
		}
		if n := e.Event.GetNotificationFailed(); n != nil {
			out = append(out, outcome{"notification.failed", n, raw})
		}
	}
	return out
}

func find(t *testing.T, outs []outcome, key string) outcome {
	t.Helper()
	var got []outcome
	for _, o := range outs {
		if o.n.GetDestination() == key {
			got = append(got, o)
		}
	}
	if len(got) != 1 {
		t.Fatalf("%d outcomes for %s, want exactly 1: %+v", len(got), key, outs)
	}
	return got[0]
}

// startNotifier runs a notifier until the returned stop is called.
func startNotifier(t *testing.T, ns *server.Server, o notify.Options, reg prometheus.Registerer) (stop func()) {
	t.Helper()
	bus := natstest.Bus(t, ns, "notifier/test")
	n := notify.New(bus, o, slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})), eventbus.NewMetrics(reg), reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("notifier Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// drained waits until the notifier's consumer has acked every report.ready
// (at least want delivered): every outcome of those runs is then stored.
func drained(t *testing.T, bus *eventbus.Bus, want uint64) {
	t.Helper()
	natstest.Eventually(t, 20*time.Second, "the notifier to ack every report.ready", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := bus.JetStream().Consumer(ctx, eventbus.AuditStream, notify.Durable)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.Delivered.Consumer >= want && info.AckFloor.Consumer >= info.Delivered.Consumer
	})
}

func counter(t *testing.T, reg *prometheus.Registry, channel, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "runbook_notifications_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["channel"] == channel && l["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func fastRetries(env map[string]string) notify.Options {
	return notify.Options{
		Getenv:   func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Attempts: 3, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Timeout: 5 * time.Second,
	}
}

// TestNotifierDeliversSlackWebhookAndEmail runs the notifier against real
// receivers: a Slack webhook that answers 500 then 200, a generic webhook,
// a real SMTP listener, and two server-configured webhooks that are down
// (500 every time) and that refuse (400).
func TestNotifierDeliversSlackWebhookAndEmail(t *testing.T) {
	t.Parallel()
	ns := natstest.Server(t)
	bus := natstest.Bus(t, ns, "test")
	slack := startReceiver(t, func(n int) int { return map[bool]int{true: 500, false: 200}[n == 0] })
	hook := startReceiver(t, always(200))
	down := startReceiver(t, always(503))
	refuse := startReceiver(t, always(400))
	mail := startSMTP(t)

	env := map[string]string{
		"SLACK_HOOK": slack.srv.URL + "/services/T000/B000/SECRETTOKEN",
		"SMTP_URL":   "smtp://runbook:s3cret-pass@" + mail.addr + "?from=runbook@example.com",
	}
	o := fastRetries(env)
	fromServer, err := notify.ServerDestinations("", down.srv.URL+"/down", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Destinations = append(fromServer, plan.Notify{Webhook: &plan.WebhookNotify{URL: refuse.srv.URL + "/refuse"}})
	reg := prometheus.NewRegistry()
	startNotifier(t, ns, o, reg)

	p := planWithNotify(hook.srv.URL + "/hook")
	rolledJSON := publishRun(t, bus, "R-ROLLBACK", p, "ROLLED_BACK", 1)
	okJSON := publishRun(t, bus, "R-SUCCESS", p, "SUCCESS", 0)
	drained(t, bus, 2)

	end := time.Date(2025, 9, 22, 14, 35, 0, 0, time.UTC).Unix()
	emailKey := "email:SMTP_URL:ops@example.com,lead@example.com"
	for _, tc := range []struct {
		run, status, json, color, title string
		email                           bool
	}{
		{"R-ROLLBACK", "ROLLED_BACK", rolledJSON, "warning", "🔄 Deployment ROLLED_BACK: R-ROLLBACK", true},
		{"R-SUCCESS", "SUCCESS", okJSON, "good", "✅ Deployment SUCCESS: R-SUCCESS", false},
	} {
		t.Run(tc.run, func(t *testing.T) {
			outs := outcomes(t, bus, tc.run)

			// Slack: 500 then 200 = retried once, the same Idempotency-Key both times.
			reqs := slack.requests(tc.run + "/slack:SLACK_HOOK")
			if len(reqs) != 2 {
				t.Fatalf("slack got %d requests, want 2 (500, then the retry)", len(reqs))
			}
			if reqs[1].path != "/services/T000/B000/SECRETTOKEN" || string(reqs[0].body) != string(reqs[1].body) {
				t.Errorf("retry differs from the first attempt: %q vs %q", reqs[0].body, reqs[1].body)
			}
			var payload map[string]any
			if err := json.Unmarshal(reqs[1].body, &payload); err != nil {
				t.Fatal(err)
			}
			assertSlack(t, payload, tc.color, tc.title, qc, "5m 0s", "kim", end)
			s := find(t, outs, "slack:SLACK_HOOK")
			if s.typ != "notification.sent" || s.n.GetAttempts() != 2 || s.n.GetChannel() != "slack" || s.n.GetTarget() != "env:SLACK_HOOK" {
				t.Errorf("slack outcome = %s %+v, want sent after 2 attempts to env:SLACK_HOOK", s.typ, s.n)
			}

			// Webhook: the report JSON as published, once.
			key := "webhook:" + hook.srv.URL + "/hook"
			hreqs := hook.requests(tc.run + "/" + key)
			if len(hreqs) != 1 || string(hreqs[0].body) != tc.json || hreqs[0].runHeader != tc.run {
				t.Fatalf("webhook got %d requests (%+v), want one with the report JSON", len(hreqs), hreqs)
			}
			if w := find(t, outs, key); w.typ != "notification.sent" || w.n.GetAttempts() != 1 {
				t.Errorf("webhook outcome = %s %+v", w.typ, w.n)
			}

			// A destination that stays down: failed after every attempt, then left alone.
			dkey := "webhook:" + down.srv.URL + "/down"
			if n := len(down.requests(tc.run + "/" + dkey)); n != 3 {
				t.Errorf("the down destination got %d attempts, want 3", n)
			}
			if f := find(t, outs, dkey); f.typ != "notification.failed" || f.n.GetAttempts() != 3 || !strings.Contains(f.n.GetError(), "HTTP 503") {
				t.Errorf("down outcome = %s %+v, want failed after 3 attempts with HTTP 503", f.typ, f.n)
			}
			// A 4xx is not retried.
			rkey := "webhook:" + refuse.srv.URL + "/refuse"
			if n := len(refuse.requests(tc.run + "/" + rkey)); n != 1 {
				t.Errorf("the refusing destination got %d attempts, want 1 (4xx is not retried)", n)
			}
			if f := find(t, outs, rkey); f.typ != "notification.failed" || f.n.GetAttempts() != 1 || !strings.Contains(f.n.GetError(), "HTTP 400") {
				t.Errorf("refusing outcome = %s %+v", f.typ, f.n)
			}

			// E-mail only for the rolled-back run.
			var email []outcome
			for _, o := range outs {
				if o.n.GetDestination() == emailKey {
					email = append(email, o)
				}
			}
			if !tc.email {
				if len(email) != 0 {
					t.Errorf("a clean SUCCESS recorded an e-mail outcome: %+v", email)
				}
			} else if len(email) != 1 || email[0].typ != "notification.sent" || email[0].n.GetTarget() != mail.addr+" to ops@example.com,lead@example.com" {
				t.Errorf("e-mail outcome = %+v", email)
			}

			// Nothing secret in the recorded events.
			for _, o := range outs {
				for _, secret := range []string{"SECRETTOKEN", "s3cret-pass"} {
					if strings.Contains(string(o.raw), secret) {
						t.Errorf("%s for %s carries the secret %q", o.typ, o.n.GetDestination(), secret)
					}
				}
			}
		})
	}

	msgs := mail.messages()
	if len(msgs) != 1 {
		t.Fatalf("SMTP got %d messages, want 1 (the ROLLED_BACK run; none for the clean SUCCESS)", len(msgs))
	}
	m := msgs[0]
	if m.user != "runbook" || m.from != "runbook@example.com" || strings.Join(m.to, ",") != "ops@example.com,lead@example.com" {
		t.Errorf("SMTP envelope: auth %q from %q to %v", m.user, m.from, m.to)
	}
	pm := parseMail(t, m.data)
	if pm.subject != "🔄 Deployment ROLLED_BACK: R-ROLLBACK (CR-2025-001 Order API v2)" || pm.attachment != rolledJSON || !strings.Contains(pm.text, qc) {
		t.Errorf("e-mail: subject %q, attachment matches %v, text %q", pm.subject, pm.attachment == rolledJSON, pm.text)
	}

	for _, tc := range []struct {
		channel, outcome string
		want             float64
	}{
		{"slack", "sent", 2}, {"webhook", "sent", 2}, {"webhook", "failed", 4},
		{"email", "sent", 1}, {"email", "skipped", 1},
	} {
		if got := counter(t, reg, tc.channel, tc.outcome); got != tc.want {
			t.Errorf("runbook_notifications_total{channel=%q,outcome=%q} = %v, want %v", tc.channel, tc.outcome, got, tc.want)
		}
	}
}

// TestNotifierSendsOncePerRunAcrossRestart: a new notifier whose consumer
// redelivers every report.ready (as a lost ack would) sends nothing twice.
func TestNotifierSendsOncePerRunAcrossRestart(t *testing.T) {
	t.Parallel()
	ns := natstest.Server(t)
	bus := natstest.Bus(t, ns, "test")
	slack := startReceiver(t, always(200))
	hook := startReceiver(t, always(204))
	mail := startSMTP(t)
	o := fastRetries(map[string]string{
		"SLACK_HOOK": slack.srv.URL + "/hook",
		"SMTP_URL":   "smtp://runbook:s3cret-pass@" + mail.addr,
	})
	p := planWithNotify(hook.srv.URL + "/hook")

	stop := startNotifier(t, ns, o, prometheus.NewRegistry())
	runs := []string{"R-1", "R-2", "R-3"}
	for _, r := range runs {
		publishRun(t, bus, r, p, "ROLLED_BACK", 0)
	}
	drained(t, bus, 3)
	stop()

	// Forget what was acked: every report.ready is delivered again.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.JetStream().DeleteConsumer(ctx, eventbus.AuditStream, notify.Durable); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	startNotifier(t, ns, o, reg)
	runs = append(runs, "R-4") // and one the new notifier has not seen
	publishRun(t, bus, "R-4", p, "ROLLED_BACK", 0)
	drained(t, bus, 4)

	if got := counter(t, reg, "slack", "duplicate") + counter(t, reg, "webhook", "duplicate") + counter(t, reg, "email", "duplicate"); got != 9 {
		t.Errorf("the restarted notifier skipped %v recorded destinations, want 9 (3 runs × 3): it did not see the redeliveries", got)
	}
	for _, r := range runs {
		if n := len(slack.requests(r + "/slack:SLACK_HOOK")); n != 1 {
			t.Errorf("run %s: %d slack messages, want 1", r, n)
		}
		if n := len(hook.requests(r + "/webhook:" + hook.srv.URL + "/hook")); n != 1 {
			t.Errorf("run %s: %d webhook messages, want 1", r, n)
		}
		sent := 0
		for _, o := range outcomes(t, bus, r) {
			if o.typ == "notification.sent" {
				sent++
			}
		}
		if sent != 3 {
			t.Errorf("run %s: %d notification.sent, want 3 (one per destination)", r, sent)
		}
	}
	if n := len(slack.requests("")); n != 4 {
		t.Errorf("slack got %d messages in all, want 4", n)
	}
	perRun := map[string]int{}
	for _, m := range mail.messages() {
		perRun[parseMail(t, m.data).header.Get("X-Runbook-Run-Id")]++
	}
	if len(perRun) != 4 || perRun["R-1"] != 1 || perRun["R-2"] != 1 || perRun["R-3"] != 1 || perRun["R-4"] != 1 {
		t.Errorf("e-mails per run = %v, want one each for R-1..R-4", perRun)
	}
}

// The seed's `slack_notify "🚀 Deployment started: $DEPLOYMENT_ID"`: a
// destination with on: [started, final] is told when the deploy starts and
// again with the report; one without `on` only with the report. A
// redelivered deploy.started sends nothing twice.
func TestNotifierTellsDeploymentStarted(t *testing.T) {
	t.Parallel()
	ns := natstest.Server(t)
	bus := natstest.Bus(t, ns, "test")
	slack := startReceiver(t, always(200))
	hook := startReceiver(t, always(200))
	planYAML := fmt.Sprintf(`change_request: {id: CR-2025-002, title: "Order API v3", type: enhancement, priority: medium}
requester: {name: Kim Operator, role: DevOps, contact: ops@example.com}
report:
  notify:
    - slack: {webhook_env: SLACK_HOOK}
      on: [started, final]
    - webhook: {url: %q}
`, hook.srv.URL)
	if _, errs := plan.Parse("plan.yaml", []byte(planYAML)); plan.HasErrors(errs) {
		t.Fatalf("plan: %v", errs)
	}
	startNotifier(t, ns, fastRetries(map[string]string{"SLACK_HOOK": slack.srv.URL}), prometheus.NewRegistry())
	req := eventbus.New("RS1", &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		PlanYaml: planYAML, PlanSource: "plan.yaml", ChangeId: "CR-2025-002", Title: "Order API v3"}})
	started := eventbus.New("RS1", &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}})
	publish(t, bus, req, started)
	natstest.Eventually(t, 20*time.Second, "the started notification", func() bool { return len(slack.requests("")) == 1 })
	body := string(slack.requests("")[0].body)
	if !strings.Contains(body, "🚀 Deployment started: RS1") || !strings.Contains(body, "CR-2025-002") {
		t.Errorf("started message: %s", body)
	}
	// Redelivered (another copy, another id): nothing sent again.
	again := eventbus.New("RS1", &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}}, "again")
	publish(t, bus, again)
	drained(t, bus, 2) // the two deploy.started
	if n := len(slack.requests("")); n != 1 {
		t.Errorf("started sent %d times", n)
	}
	if n := len(hook.requests("")); n != 0 {
		t.Errorf("the webhook without on: [started] got %d requests before the report", n)
	}
	find(t, outcomes(t, bus, "RS1"), "slack:SLACK_HOOK#started")

	// The report: both are told, the slack one a second time (the report).
	ready := eventbus.New("RS1", &runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{
		Status: "SUCCESS", ReportJson: reportJSON(t, "RS1", "SUCCESS", "kim", 0), QcSummary: qc}})
	publish(t, bus, ready)
	natstest.Eventually(t, 20*time.Second, "the final notifications", func() bool {
		return len(slack.requests("")) == 2 && len(hook.requests("")) == 1
	})
	if b := string(slack.requests("")[1].body); !strings.Contains(b, "Deployment SUCCESS") {
		t.Errorf("final slack message: %s", b)
	}
}

// A deploy.started that lost the race with a cancel (the deployer runs no
// step: runstate's Stopped) tells no one that the deployment started; the
// run's own deploy.started in another run still does.
func TestNotifierSaysNothingStartedOfAStoppedRun(t *testing.T) {
	t.Parallel()
	ns := natstest.Server(t)
	bus := natstest.Bus(t, ns, "test")
	slack := startReceiver(t, always(200))
	planYAML := `change_request: {id: CR-2025-003, title: "Order API v4", type: enhancement, priority: medium}
requester: {name: Kim Operator, role: DevOps, contact: ops@example.com}
report:
  notify:
    - slack: {webhook_env: SLACK_HOOK}
      on: [started, final]
`
	startNotifier(t, ns, fastRetries(map[string]string{"SLACK_HOOK": slack.srv.URL}), prometheus.NewRegistry())
	for _, run := range []string{"STOPPED", "GOES"} {
		req := eventbus.New(run, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
			PlanYaml: planYAML, PlanSource: "plan.yaml", ChangeId: "CR-2025-003", Title: "Order API v4"}})
		publish(t, bus, req)
		if run == "STOPPED" {
			publish(t, bus, eventbus.New(run, &runbookv1.Event_RunCancelled{RunCancelled: &runbookv1.RunEnded{Reason: "cancelled by ops"}}))
		}
		publish(t, bus, eventbus.New(run, &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}}))
	}
	drained(t, bus, 2)
	natstest.Eventually(t, 20*time.Second, "the started notification of GOES", func() bool { return len(slack.requests("")) >= 1 })
	drained(t, bus, 2)
	if n := len(slack.requests("")); n != 1 {
		t.Fatalf("%d started notifications, want 1 (of GOES only)", n)
	}
	if body := string(slack.requests("")[0].body); !strings.Contains(body, "GOES") || strings.Contains(body, "STOPPED") {
		t.Errorf("started message: %s", body)
	}
	if outs := outcomes(t, bus, "STOPPED"); len(outs) != 0 {
		t.Errorf("outcomes recorded for the stopped run: %+v", outs)
	}
}

// on: is validated: a moment that does not exist, and e-mail at the start.
func TestNotifyOnValidation(t *testing.T) {
	t.Parallel()
	const head = "change_request: {id: CR-N, title: n}\nreport:\n  notify:\n"
	for _, tc := range []struct{ yaml, path, want string }{
		{"    - slack: {webhook_env: HOOK}\n      on: [begun]\n", "report.notify[0].on[0]", `"begun" is not a notification moment`},
		{"    - email: {smtp_env: SMTP, to: [a@example.com]}\n      on: [started]\n", "report.notify[0].on", "e-mail carries the report only"},
		{"    - slack: {webhook_env: HOOK}\n      on: []\n", "report.notify[0].on", "on must list"},
	} {
		_, issues := plan.Parse("p.yaml", []byte(head+tc.yaml))
		found := false
		for _, i := range issues {
			if i.Path == tc.path && strings.Contains(i.Message, tc.want) && i.Line > 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: want %q at %s, got %v", strings.TrimSpace(tc.yaml), tc.want, tc.path, issues)
		}
	}
}
