// Package source is where the monitor's numbers come from. Each kind of
// plan source (http_probe, prometheus_scrape) has its own file: the HTTP
// side there, the pure reading of what came back (percentiles, bucket
// deltas, exposition text) in a file of its own with table tests.
//
// A source never makes a number up: a probe or scrape that fails is an
// error (a sample error for the monitor), and a metric the source cannot
// measure this round (no traffic between two scrapes) is simply absent.
package source

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

// Kinds of source, as the plan names them.
const (
	KindHTTPProbe        = "http_probe"
	KindPrometheusScrape = "prometheus_scrape"
)

// Sample is one measured value of one metric.
type Sample struct {
	Metric string
	Value  float64
}

// Source yields one round of samples per call. Collect is called by one
// goroutine at a time.
type Source interface {
	// Kind is the plan's name of the source kind (a low-cardinality label).
	Kind() string
	// Name identifies the source in events and logs: kind and target URL
	// (without credentials or query).
	Name() string
	// Collect takes one round of samples. An error means the round measured
	// nothing (a sample error); samples may be empty without error when the
	// source had nothing to measure (e.g. no traffic between two scrapes).
	Collect(ctx context.Context) ([]Sample, error)
}

// Config is what every source is built with.
type Config struct {
	// Client makes the HTTP requests (default: a client of its own).
	Client *http.Client
	// Timeout bounds each request (default 5s).
	Timeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.Client == nil {
		c.Client = &http.Client{}
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	return c
}

// New builds the source of one plan entry. A source that cannot be built
// (no kind set, a bad URL) is returned as a Broken source whose every round
// fails with the reason, together with the error: the monitor counts and
// logs those rounds rather than pretending the source is healthy.
func New(s plan.Source, c Config) (Source, error) {
	c = c.withDefaults()
	var (
		src Source
		err error
	)
	switch {
	case s.HTTPProbe != nil && s.PrometheusScrape != nil:
		err = fmt.Errorf("source sets both http_probe and prometheus_scrape: set exactly one")
	case s.HTTPProbe != nil:
		src, err = NewHTTPProbe(*s.HTTPProbe, c)
	case s.PrometheusScrape != nil:
		src, err = NewPrometheusScrape(*s.PrometheusScrape, c)
	default:
		err = fmt.Errorf("source sets no kind: set http_probe or prometheus_scrape")
	}
	if err != nil {
		return Broken{kind: kindOf(s), err: err}, err
	}
	return src, nil
}

func kindOf(s plan.Source) string {
	switch {
	case s.HTTPProbe != nil && s.PrometheusScrape == nil:
		return KindHTTPProbe
	case s.PrometheusScrape != nil && s.HTTPProbe == nil:
		return KindPrometheusScrape
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
