package source

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

// maxScrapeBody bounds what a scrape reads.
const maxScrapeBody = 32 << 20

// PrometheusScrape reads a target's /metrics text each round and reports
// the p95 latency and error rate of the traffic since the previous round,
// and the plan's metrics entries (gauges, counter rates, quantiles).
type PrometheusScrape struct {
	url     string
	name    string
	query   ScrapeQuery
	client  *http.Client
	timeout time.Duration
	now     func() time.Time
	prev    *Scrape
}

// NewPrometheusScrape builds a prometheus_scrape source. A URL without a
// path (or "/") scrapes <url>/metrics.
func NewPrometheusScrape(p plan.PrometheusScrape, c Config) (*PrometheusScrape, error) {
	c = c.withDefaults()
	u, err := parseTarget(p.URL)
	if err != nil {
		return nil, fmt.Errorf("prometheus_scrape: %w", err)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/metrics"
	}
	q := ScrapeQuery{Histogram: strings.TrimSpace(p.LatencyHistogram), Requests: p.EffectiveRequestsCounter(), Errors: p.ErrorsCounter}
	for _, m := range p.Metrics {
		q.Metrics = append(q.Metrics, MetricQuery{
			Name: m.Name, Type: m.EffectiveType(), Quantile: m.EffectiveQuantile(), Match: m.Match,
			Scale: m.EffectiveScale(), As: m.EffectiveAs(),
		})
	}
	switch {
	case q.Histogram == "" && q.Errors == "" && len(q.Metrics) == 0:
		return nil, fmt.Errorf("prometheus_scrape %s: set latency_histogram, errors_counter or metrics", displayURL(u))
	case q.Errors != "" && q.Requests == "":
		return nil, fmt.Errorf("prometheus_scrape %s: errors_counter needs requests_counter or latency_histogram", displayURL(u))
	}
	return &PrometheusScrape{
		url: u.String(), name: KindPrometheusScrape + " " + displayURL(u),
		query: q, client: c.Client, timeout: c.Timeout, now: c.Now,
	}, nil
}

func (p *PrometheusScrape) Kind() string { return KindPrometheusScrape }
func (p *PrometheusScrape) Name() string { return p.name }

// Collect scrapes once. The first successful scrape only sets the baseline
// of the deltas (only gauges have samples); each later one yields the
// samples of the traffic since the previous successful scrape. A failed
// scrape keeps the previous baseline. A metrics entry that cannot be read
// (absent, no label set matching) comes back in a *MissingError next to the
// other samples.
func (p *PrometheusScrape) Collect(ctx context.Context) ([]Sample, error) {
	cur, err := p.scrape(ctx)
	if err != nil {
		return nil, err
	}
	cur.At = p.now()
	prev := p.prev
	p.prev = cur
	out := CompareScrapes(prev, cur, p.query.Errors != "")
	more, miss := CompareMetrics(prev, cur, p.query.Metrics)
	return append(out, more...), missing(p.name, miss)
}

func (p *PrometheusScrape) scrape(ctx context.Context) (*Scrape, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.name, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	req.Header.Set("User-Agent", "runbook-monitor")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("%s: status %s", p.name, resp.Status)
	}
	s, err := ParseScrape(io.LimitReader(resp.Body, maxScrapeBody), p.query)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.name, err)
	}
	return s, nil
}
