// Package source is where the monitor's numbers come from. Each kind of
// plan source has its own file: http_probe, prometheus_scrape,
// prometheus_query, system and alertmanager; the HTTP (or /proc) side there,
// the pure reading of what came back (percentiles, bucket deltas,
// exposition text, PromQL results, /proc files, webhook JSON) in a file of
// its own with table tests and fuzz tests.
//
// A source never makes a number up: a probe or scrape that fails is an
// error (a sample error for the monitor), and a metric the source cannot
// measure this round (no traffic between two scrapes) is simply absent.
//
// # What Collect returns (the contract the monitor's gates rely on)
//
//   - samples, nil: the round measured these metrics. A metric the source
//     had nothing to measure for (no traffic between two scrapes, no alert
//     firing) is absent, and that is not an error.
//   - nil, err (not a *MissingError): the round measured nothing at all (the
//     target did not answer, the scrape was garbage): every metric of the
//     source is missing this round.
//   - samples, *MissingError: the samples are good, but the metrics the
//     MissingError lists were not measured this round, each with its reason
//     (a PromQL query with an empty result or NaN, a series absent from a
//     scrape, a failed query). They have no sample and must count as
//     missing (no data), never as a pass. Use Missing(err) to read them.
package source

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

// Kinds of source, as the plan names them.
const (
	KindHTTPProbe        = "http_probe"
	KindPrometheusScrape = "prometheus_scrape"
	KindPrometheusQuery  = "prometheus_query"
	KindSystem           = "system"
	KindAlertmanager     = "alertmanager"
)

// Sample is one measured value of one metric.
type Sample struct {
	Metric string
	Value  float64
	// Source, when set, says where the sample came from more precisely than
	// the source's Name (the alertmanager source puts the alert's labels
	// here); the monitor uses it as the sample's and the breach's source.
	Source string
}

// Source yields one round of samples per call. Collect is called by one
// goroutine at a time.
type Source interface {
	// Kind is the plan's name of the source kind (a low-cardinality label).
	Kind() string
	// Name identifies the source in events and logs: kind and target URL
	// (without credentials or query).
	Name() string
	// Collect takes one round of samples: see the package documentation
	// for what its results mean (samples, an error, or both with a
	// *MissingError).
	Collect(ctx context.Context) ([]Sample, error)
}

// MissingError is Collect's error when some of the source's metrics were
// measured (the samples returned with it) and others were not.
type MissingError struct {
	// Source is the source's Name.
	Source string
	// Metrics maps each metric not measured this round to why.
	Metrics map[string]error
}

func (e *MissingError) Error() string {
	parts := make([]string, 0, len(e.Metrics))
	for _, m := range slices.Sorted(maps.Keys(e.Metrics)) {
		parts = append(parts, fmt.Sprintf("%s: %v", m, e.Metrics[m]))
	}
	return fmt.Sprintf("%s: %d metric(s) not measured: %s", e.Source, len(e.Metrics), strings.Join(parts, "; "))
}

// Missing reports the metrics a Collect error says were not measured while
// the round's other samples are good; false when err is nil or not a
// *MissingError (then the round measured nothing, or everything).
func Missing(err error) (map[string]error, bool) {
	var me *MissingError
	if errors.As(err, &me) {
		return me.Metrics, true
	}
	return nil, false
}

// missing is a *MissingError for the metrics of m, nil when m is empty.
func missing(source string, m map[string]error) error {
	if len(m) == 0 {
		return nil
	}
	return &MissingError{Source: source, Metrics: m}
}

// SampleSource is the source to record for smp taken by src: smp.Source
// when set, src.Name() otherwise.
func SampleSource(src Source, smp Sample) string {
	if smp.Source != "" {
		return smp.Source
	}
	return src.Name()
}

// Config is what every source is built with.
type Config struct {
	// Client makes the HTTP requests (default: a client of its own).
	Client *http.Client
	// Timeout bounds each request (default 5s).
	Timeout time.Duration
	// Getenv reads the environment variables the plan names (e.g.
	// prometheus_query's auth_env). Nil: no variable is set.
	Getenv func(string) (string, bool)
	// Alerts is the monitor's Alertmanager receiver, the alertmanager
	// sources' input. Nil: an alertmanager source fails every round.
	Alerts *Alerts
	// Proc is the proc filesystem of system sources (default /proc).
	Proc string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Client == nil {
		c.Client = &http.Client{}
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Getenv == nil {
		c.Getenv = func(string) (string, bool) { return "", false }
	}
	if c.Proc == "" {
		c.Proc = "/proc"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// New builds the source of one plan entry. A source that cannot be built
// (no kind or several set, a bad URL, an auth_env that is not set) is
// returned as a Broken source whose every round fails with the reason,
// together with the error: the monitor counts and logs those rounds rather
// than pretending the source is healthy.
func New(s plan.Source, c Config) (Source, error) {
	c = c.withDefaults()
	var (
		src Source
		err error
	)
	kind := kindOf(s)
	switch kind {
	case "":
		err = fmt.Errorf("source sets no kind: set one of http_probe, prometheus_scrape, prometheus_query, system, alertmanager")
	case "invalid":
		err = fmt.Errorf("source sets several kinds: set exactly one of http_probe, prometheus_scrape, prometheus_query, system, alertmanager")
	case KindHTTPProbe:
		src, err = NewHTTPProbe(*s.HTTPProbe, c)
	case KindPrometheusScrape:
		src, err = NewPrometheusScrape(*s.PrometheusScrape, c)
	case KindPrometheusQuery:
		src, err = NewPrometheusQuery(*s.PrometheusQuery, c)
	case KindSystem:
		src, err = NewSystem(*s.System, c)
	case KindAlertmanager:
		src, err = NewAlertmanager(*s.Alertmanager, c)
	}
	if err != nil {
		if kind == "" {
			kind = "invalid"
		}
		return Broken{kind: kind, err: err}, err
	}
	return src, nil
}

// kindOf is the one kind s sets, "" when none, "invalid" when several.
func kindOf(s plan.Source) string {
	var set []string
	for k, on := range map[string]bool{
		KindHTTPProbe: s.HTTPProbe != nil, KindPrometheusScrape: s.PrometheusScrape != nil,
		KindPrometheusQuery: s.PrometheusQuery != nil, KindSystem: s.System != nil, KindAlertmanager: s.Alertmanager != nil,
	} {
		if on {
			set = append(set, k)
		}
	}
	switch len(set) {
	case 0:
		return ""
	case 1:
		return set[0]
	}
	return "invalid"
}

// Broken is a source that could not be built: every round fails.
type Broken struct {
	kind string
	err  error
}

func (b Broken) Kind() string { return b.kind }
func (b Broken) Name() string { return b.kind + " (invalid)" }
func (b Broken) Collect(context.Context) ([]Sample, error) {
	return nil, fmt.Errorf("source is invalid: %w", b.err)
}

// parseTarget checks a target URL: absolute http(s) with a host.
func parseTarget(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("url %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("url %q: want an absolute http:// or https:// URL", raw)
	}
	return u, nil
}

// displayURL is u without credentials, query or fragment: safe for events.
func displayURL(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}
