package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

// maxProbeBody is how much of a response body a probe reads (the latency
// covers reading it, as a client would).
const maxProbeBody = 1 << 20

// HTTPProbe sends a few requests to a URL each round and reports their p95
// latency and error rate.
type HTTPProbe struct {
	url      string
	name     string
	method   string
	requests int
	client   *http.Client
	timeout  time.Duration
}

// NewHTTPProbe builds an http_probe source.
func NewHTTPProbe(p plan.HTTPProbe, c Config) (*HTTPProbe, error) {
	c = c.withDefaults()
	u, err := parseTarget(p.URL)
	if err != nil {
		return nil, fmt.Errorf("http_probe: %w", err)
	}
	return &HTTPProbe{
		url: u.String(), name: KindHTTPProbe + " " + displayURL(u),
		method:   strings.ToUpper(strings.TrimSpace(p.EffectiveMethod())),
		requests: p.EffectiveRequests(), client: c.Client, timeout: c.Timeout,
	}, nil
}

func (p *HTTPProbe) Kind() string { return KindHTTPProbe }
func (p *HTTPProbe) Name() string { return p.name }

// Collect sends the round's requests at once (a round must fit in the
// monitor's interval) and summarises them with SummarizeProbe.
func (p *HTTPProbe) Collect(ctx context.Context) ([]Sample, error) {
	results := make([]ProbeResult, p.requests)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() { results[i] = p.one(ctx) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		// Shutting down: the round is not a measurement.
		return nil, fmt.Errorf("%s: %w", p.name, err)
	}
	return SummarizeProbe(results), nil
}

func (p *HTTPProbe) one(ctx context.Context) ProbeResult {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, p.method, p.url, nil)
	if err != nil {
		return ProbeResult{Err: err}
	}
	req.Header.Set("User-Agent", "runbook-monitor")
	start := time.Now()
	resp, err := p.client.Do(req)
	if err == nil {
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBody))
		resp.Body.Close()
	}
	r := ProbeResult{Latency: time.Since(start), Err: err, TimedOut: errors.Is(err, context.DeadlineExceeded)}
	if resp != nil {
		r.Status = resp.StatusCode
	}
	return r
}
