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
// the p95 latency and error rate of the traffic since the previous round.
type PrometheusScrape struct {
	url     string
	name    string
	query   ScrapeQuery
	client  *http.Client
	timeout time.Duration
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
	if strings.TrimSpace(p.LatencyHistogram) == "" {
		return nil, fmt.Errorf("prometheus_scrape %s: latency_histogram is required", displayURL(u))
	}
	return &PrometheusScrape{
		url: u.String(), name: KindPrometheusScrape + " " + displayURL(u),
		query:  ScrapeQuery{Histogram: p.LatencyHistogram, Requests: p.RequestsCounter, Errors: p.ErrorsCounter},
		client: c.Client, timeout: c.Timeout,
	}, nil
}

func (p *PrometheusScrape) Kind() string { return KindPrometheusScrape }
func (p *PrometheusScrape) Name() string { return p.name }

// Collect scrapes once. The first successful scrape only sets the baseline
// (no samples); each later one yields the samples of the traffic since the
// previous successful scrape. A failed scrape keeps the previous baseline.
func (p *PrometheusScrape) Collect(ctx context.Context) ([]Sample, error) {
	cur, err := p.scrape(ctx)
	if err != nil {
		return nil, err
	}
	prev := p.prev
	p.prev = cur
	return CompareScrapes(prev, cur, p.query.Errors != ""), nil
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
