package source

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

const webhookFiring = `{"receiver":"runbook","status":"firing","alerts":[
 {"status":"firing","labels":{"alertname":"HighLatency","service":"estimator","severity":"page"},"annotations":{"summary":"slow"},"startsAt":"2026-01-01T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"aaa"},
 {"status":"firing","labels":{"alertname":"DiskFull","service":"billing"},"annotations":{},"startsAt":"2026-01-01T10:00:00Z","endsAt":"0001-01-01T00:00:00Z","fingerprint":"bbb"}],
 "groupLabels":{},"commonLabels":{},"commonAnnotations":{},"externalURL":"http://am:9093","version":"4","groupKey":"{}:{}","truncatedAlerts":0}`

func TestParseWebhook(t *testing.T) {
	t.Parallel()
	m, err := ParseWebhook([]byte(webhookFiring))
	if err != nil || len(m.Alerts) != 2 || m.Alerts[0].Labels["alertname"] != "HighLatency" || !m.Alerts[0].EndsAt.IsZero() {
		t.Fatalf("webhook = %+v, %v", m, err)
	}
	for body, has := range map[string]string{
		`not json`:                    "not an Alertmanager webhook message",
		`{"version":"3","alerts":[]}`: `version "3"`,
		`{"version":"4","alerts":[{"status":"firing"}]}`:                   "alerts[0] has no labels",
		`{"version":"4","alerts":[{"status":"weird","labels":{"a":"b"}}]}`: `status "weird"`,
	} {
		if _, err := ParseWebhook([]byte(body)); err == nil || !strings.Contains(err.Error(), has) {
			t.Errorf("%s: err = %v; want %q", body, err, has)
		}
	}
}

func TestAlertActiveBetween(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	since, now := t0.Add(time.Minute), t0.Add(2*time.Minute)
	tests := []struct {
		name string
		a    Alert
		want bool
	}{
		{"firing, no end", Alert{Status: "firing", StartsAt: t0}, true},
		{"firing since before the window still counts", Alert{Status: "firing", StartsAt: t0.Add(-time.Hour)}, true},
		{"firing with an end ahead", Alert{Status: "firing", StartsAt: t0, EndsAt: now.Add(time.Minute)}, true},
		{"firing whose end passed inside the round", Alert{Status: "firing", StartsAt: t0, EndsAt: since.Add(time.Second)}, true},
		{"firing whose end passed before the round", Alert{Status: "firing", StartsAt: t0, EndsAt: since.Add(-time.Second)}, false},
		{"resolved inside the round: it fired in it", Alert{Status: "resolved", StartsAt: t0, EndsAt: since.Add(time.Second)}, true},
		{"resolved before the round", Alert{Status: "resolved", StartsAt: t0, EndsAt: since.Add(-time.Second)}, false},
		{"resolved, no end", Alert{Status: "resolved", StartsAt: t0}, false},
	}
	for _, tt := range tests {
		if got := tt.a.activeBetween(since, now); got != tt.want {
			t.Errorf("%s: %v; want %v", tt.name, got, tt.want)
		}
	}
}

func TestAlertmanagerSource(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	alerts := NewAlerts(clock)
	src, err := NewAlertmanager(plan.AlertmanagerSource{Match: map[string]string{"service": "estimator"}}, Config{Alerts: alerts, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	collect := func() map[string]Sample {
		t.Helper()
		now = now.Add(time.Second)
		ss, err := src.Collect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]Sample{}
		for _, s := range ss {
			out[s.Metric] = s
		}
		return out
	}
	if got := collect(); len(got) != 0 {
		t.Fatalf("no alerts: samples %v", got)
	}
	m, _ := ParseWebhook([]byte(webhookFiring))
	if n := alerts.Receive(m); n != 2 {
		t.Fatalf("received %d", n)
	}
	got := collect()
	s, ok := got["alert:HighLatency"]
	if len(got) != 1 || !ok || s.Value != 1 || !strings.Contains(s.Source, `service="estimator"`) || !strings.Contains(s.Source, `alertname="HighLatency"`) {
		t.Fatalf("samples = %+v; want alert:HighLatency = 1 with its labels as source (the billing alert does not match)", got)
	}
	// Still firing: every round says so.
	if got := collect(); got["alert:HighLatency"].Value != 1 {
		t.Errorf("still firing: %v", got)
	}
	// Resolved: the round it was resolved in still counts it, the next does not.
	m.Alerts[0].Status, m.Alerts[0].EndsAt = "resolved", now.Add(500*time.Millisecond)
	alerts.Receive(m)
	if got := collect(); got["alert:HighLatency"].Value != 1 {
		t.Errorf("resolved during the round: %v; want it counted", got)
	}
	if got := collect(); len(got) != 0 {
		t.Errorf("after it was resolved: %v; want nothing", got)
	}

	if _, err := NewAlertmanager(plan.AlertmanagerSource{}, Config{Alerts: alerts}); err == nil {
		t.Error("empty match accepted")
	}
	if _, err := NewAlertmanager(plan.AlertmanagerSource{Match: map[string]string{"a": "b"}}, Config{}); err == nil {
		t.Error("no receiver accepted")
	}
}

func TestAlertMetric(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"HighLatency": "alert:HighLatency", "": "alert:unnamed", "disk full/sda": "alert:disk_full_sda"} {
		if got := AlertMetric(in); got != want {
			t.Errorf("AlertMetric(%q) = %q; want %q", in, got, want)
		}
	}
}

// A message without data (no alerts field at all) is a message of no
// alerts, not a crash on the embedded template.Data.
func TestParseWebhookNoData(t *testing.T) {
	t.Parallel()
	m, err := ParseWebhook([]byte(`{"version":"4","groupKey":"{}"}`))
	if err != nil || m.Data == nil || len(m.Alerts) != 0 || m.GroupKey != "{}" {
		t.Fatalf("webhook = %+v, %v; want no alerts", m, err)
	}
	if n := NewAlerts(nil).Receive(m); n != 0 {
		t.Errorf("received %d", n)
	}
}

// FuzzParseWebhook: whatever is posted to the receiver, parsing does not
// panic, and what it accepts can be received (every alert has labels and
// a known status).
func FuzzParseWebhook(f *testing.F) {
	f.Add([]byte(webhookFiring))
	f.Add([]byte(`{"version":"4"}`))
	f.Add([]byte(`{"version":"4","alerts":null}`))
	f.Add([]byte(`{"version":"4","alerts":[{"status":"resolved","labels":{"a":"b"},"endsAt":"2026-01-01T00:00:00Z"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ParseWebhook(body)
		if err != nil {
			return
		}
		for i, a := range m.Alerts {
			if len(a.Labels) == 0 || (a.Status != "firing" && a.Status != "resolved") {
				t.Fatalf("alerts[%d] accepted: %+v", i, a)
			}
		}
		if n := NewAlerts(nil).Receive(m); n != len(m.Alerts) {
			t.Fatalf("received %d of %d", n, len(m.Alerts))
		}
	})
}
