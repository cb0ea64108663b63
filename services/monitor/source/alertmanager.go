package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/alertmanager/template"
	"github.com/prometheus/common/model"

	"github.com/kis-core/runbook/domain/plan"
)

// WebhookMessage is Alertmanager's webhook payload, version 4
// (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config):
// the shape of Alertmanager's notify/webhook.Message, around the data types
// Alertmanager marshals it from (template.Data, template.Alert). The
// notify/webhook package itself is not imported: it brings every notifier's
// dependencies (54 modules) for three fields.
type WebhookMessage struct {
	*template.Data
	Version         string `json:"version"`
	GroupKey        string `json:"groupKey"`
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
}

// ParseWebhook reads an Alertmanager webhook body. Version 4 is the one
// Alertmanager has sent since 0.x; another version is refused (its shape
// may differ), as is an alert without labels or with an unknown status.
func ParseWebhook(body []byte) (WebhookMessage, error) {
	var m WebhookMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return WebhookMessage{}, fmt.Errorf("not an Alertmanager webhook message: %w", err)
	}
	if m.Version != "4" {
		return WebhookMessage{}, fmt.Errorf("webhook message version %q: want \"4\"", m.Version)
	}
	if m.Data == nil {
		m.Data = &template.Data{}
	}
	for i, a := range m.Alerts {
		if len(a.Labels) == 0 {
			return WebhookMessage{}, fmt.Errorf("alerts[%d] has no labels", i)
		}
		if a.Status != string(model.AlertFiring) && a.Status != string(model.AlertResolved) {
			return WebhookMessage{}, fmt.Errorf("alerts[%d] status %q: want firing or resolved", i, a.Status)
		}
	}
	return m, nil
}

// Alert is what the receiver knows of one alert.
type Alert struct {
	Labels   map[string]string
	Status   string
	StartsAt time.Time
	EndsAt   time.Time
	// Received is when the receiver last heard of it.
	Received time.Time
}

// activeBetween reports whether the alert was firing at some time in
// (since, now]: it is firing by its last notification (and has not passed
// an end Alertmanager gave it), or it was resolved after since.
func (a Alert) activeBetween(since, now time.Time) bool {
	if a.Status == "firing" && (a.EndsAt.IsZero() || a.EndsAt.After(now)) {
		return true
	}
	return !a.EndsAt.IsZero() && a.EndsAt.After(since) && !a.EndsAt.Before(a.StartsAt)
}

// Alerts is the monitor's Alertmanager receiver: the alerts posted to it,
// by fingerprint, for the alertmanager sources to read. It is safe for
// concurrent use. Alerts ended more than an hour ago are forgotten, and it
// holds at most maxAlerts (the least recently heard of go first).
type Alerts struct {
	mu  sync.Mutex
	now func() time.Time
	m   map[string]Alert
}

const (
	maxAlerts    = 10_000
	forgetEndsAt = time.Hour
)

// NewAlerts makes an empty receiver; now is its clock (nil: time.Now).
func NewAlerts(now func() time.Time) *Alerts {
	if now == nil {
		now = time.Now
	}
	return &Alerts{now: now, m: map[string]Alert{}}
}

// Receive records a webhook message's alerts and returns how many.
func (a *Alerts) Receive(msg WebhookMessage) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	for _, w := range msg.Alerts {
		key := w.Fingerprint
		if key == "" {
			key = FormatLabels(w.Labels)
		}
		a.m[key] = Alert{Labels: maps.Clone(w.Labels), Status: w.Status, StartsAt: w.StartsAt, EndsAt: w.EndsAt, Received: now}
	}
	a.gc(now)
	return len(msg.Alerts)
}

func (a *Alerts) gc(now time.Time) {
	for k, al := range a.m {
		if !al.EndsAt.IsZero() && al.EndsAt.Before(now.Add(-forgetEndsAt)) {
			delete(a.m, k)
		}
	}
	if over := len(a.m) - maxAlerts; over > 0 {
		keys := slices.Collect(maps.Keys(a.m))
		sort.Slice(keys, func(i, j int) bool { return a.m[keys[i]].Received.Before(a.m[keys[j]].Received) })
		for _, k := range keys[:over] {
			delete(a.m, k)
		}
	}
}

// Active are the alerts whose labels match and that were firing at some
// time in (since, now], sorted by labels.
func (a *Alerts) Active(match map[string]string, since, now time.Time) []Alert {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Alert
	for _, al := range a.m {
		if labelsMatch(al.Labels, match) && al.activeBetween(since, now) {
			out = append(out, al)
		}
	}
	sort.Slice(out, func(i, j int) bool { return FormatLabels(out[i].Labels) < FormatLabels(out[j].Labels) })
	return out
}

func labelsMatch(labels, match map[string]string) bool {
	for k, v := range match {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// FormatLabels writes labels as {a="x", b="y"}, sorted by name.
func FormatLabels(labels map[string]string) string { return formatMatch(labels) }

// Alertmanager is the source of one plan's alertmanager entry: every
// alert whose labels match, firing since the previous round (or since the
// source was built, at the start of the run's window), is a sample
// alert:<alertname> = the number of such alerts, with the first one's
// labels as the sample's source.
type Alertmanager struct {
	name   string
	match  map[string]string
	alerts *Alerts
	now    func() time.Time
	since  time.Time
}

// NewAlertmanager builds an alertmanager source reading c.Alerts.
func NewAlertmanager(p plan.AlertmanagerSource, c Config) (*Alertmanager, error) {
	c = c.withDefaults()
	name := KindAlertmanager + " " + FormatLabels(p.Match)
	if len(p.Match) == 0 {
		return nil, fmt.Errorf("%s: match is empty: it would take every alert anywhere", name)
	}
	if c.Alerts == nil {
		return nil, fmt.Errorf("%s: this monitor has no Alertmanager receiver", name)
	}
	return &Alertmanager{name: name, match: maps.Clone(p.Match), alerts: c.Alerts, now: c.Now, since: c.Now()}, nil
}

func (s *Alertmanager) Kind() string { return KindAlertmanager }
func (s *Alertmanager) Name() string { return s.name }

// Collect reports the matching alerts firing since the previous round. No
// alert is no sample (there is nothing to measure, and no violation).
func (s *Alertmanager) Collect(ctx context.Context) ([]Sample, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now()
	active := s.alerts.Active(s.match, s.since, now)
	s.since = now
	byName := map[string][]Alert{}
	for _, a := range active {
		n := AlertMetric(a.Labels["alertname"])
		byName[n] = append(byName[n], a)
	}
	var out []Sample
	for _, n := range slices.Sorted(maps.Keys(byName)) {
		as := byName[n]
		src := KindAlertmanager + " " + FormatLabels(as[0].Labels)
		if len(as) > 1 {
			src += fmt.Sprintf(" (+%d more)", len(as)-1)
		}
		out = append(out, Sample{Metric: n, Value: float64(len(as)), Source: src})
	}
	return out, nil
}

var notMetricChar = regexp.MustCompile(`[^a-zA-Z0-9_:]`)

// AlertMetric is the metric of an alert named alertname:
// alert:<alertname>, any character a metric name cannot hold made _.
func AlertMetric(alertname string) string {
	if alertname == "" {
		alertname = "unnamed"
	}
	return plan.AlertMetricPrefix + notMetricChar.ReplaceAllString(alertname, "_")
}

// ReadWebhook reads and parses a webhook request body of at most limit
// bytes.
func ReadWebhook(r io.Reader, limit int64) (WebhookMessage, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return WebhookMessage{}, fmt.Errorf("read webhook body: %w", err)
	}
	if int64(len(b)) > limit {
		return WebhookMessage{}, errors.New("webhook body is too large")
	}
	return ParseWebhook(b)
}
