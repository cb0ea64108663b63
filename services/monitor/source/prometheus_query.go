package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/kis-core/runbook/domain/plan"
)

// maxQueryBody bounds what one query's answer may be.
const maxQueryBody = 8 << 20

// PrometheusQuery runs the plan's PromQL instant queries against a
// Prometheus server's HTTP API each round, one metric per query, with
// client_golang's API client (api/prometheus/v1).
type PrometheusQuery struct {
	api     promv1.API
	name    string
	queries map[string]string
	metrics []string // sorted names of queries
	timeout time.Duration
}

// NewPrometheusQuery builds a prometheus_query source. The auth header's
// value is read from the environment variable the plan names, now: a
// variable that is not set is an error naming the variable (never a value).
func NewPrometheusQuery(p plan.PrometheusQuery, c Config) (*PrometheusQuery, error) {
	c = c.withDefaults()
	u, err := parseTarget(p.URL)
	if err != nil {
		return nil, fmt.Errorf("prometheus_query: %w", err)
	}
	name := KindPrometheusQuery + " " + displayURL(u)
	if len(p.Queries) == 0 {
		return nil, fmt.Errorf("%s: no queries", name)
	}
	t := &queryTransport{base: c.Client.Transport}
	if t.base == nil {
		t.base = http.DefaultTransport
	}
	if p.AuthEnv != "" {
		v, ok := c.Getenv(p.AuthEnv)
		if !ok || v == "" {
			return nil, fmt.Errorf("%s: auth_env %s is not set (it holds the %s header's value)", name, p.AuthEnv, p.EffectiveAuthHeader())
		}
		t.header, t.auth = p.EffectiveAuthHeader(), v
	}
	addr := *u
	addr.RawQuery, addr.Fragment = "", ""
	client := *c.Client
	client.Transport = t
	cl, err := api.NewClient(api.Config{Address: addr.String(), Client: &client})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &PrometheusQuery{
		api: promv1.NewAPI(cl), name: name,
		queries: p.Queries, metrics: slices.Sorted(maps.Keys(p.Queries)),
		timeout: c.Timeout,
	}, nil
}

func (q *PrometheusQuery) Kind() string { return KindPrometheusQuery }
func (q *PrometheusQuery) Name() string { return q.name }

// Collect runs every query at once. Each query that gives a value is a
// sample; each that fails, is empty or NaN is listed in a *MissingError.
func (q *PrometheusQuery) Collect(ctx context.Context) ([]Sample, error) {
	type result struct {
		v   PromQLValue
		err error
	}
	results := make([]result, len(q.metrics))
	var wg sync.WaitGroup
	for i, m := range q.metrics {
		wg.Go(func() {
			v, err := q.Query(ctx, q.queries[m])
			results[i] = result{v, err}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", q.name, err)
	}
	var out []Sample
	miss := map[string]error{}
	for i, m := range q.metrics {
		if r := results[i]; r.err != nil {
			miss[m] = r.err
		} else {
			out = append(out, Sample{Metric: m, Value: r.v.Value})
		}
	}
	return out, missing(q.name, miss)
}

// Query runs one instant query now and reduces its result (PromQLValueOf).
// An error the API answers is "query failed: <errorType>: <error>"; an
// answer that is not the API's JSON is "not a Prometheus API response: …".
func (q *PrometheusQuery) Query(ctx context.Context, promql string) (PromQLValue, error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	v, _, _, err := q.api.Query(ctx, promql, time.Time{})
	if err != nil {
		var apiErr *promv1.Error
		switch {
		case errors.As(err, &apiErr) && apiErr.Type == promv1.ErrBadResponse:
			return PromQLValue{}, fmt.Errorf("not a Prometheus API response: %s", apiErr.Msg)
		case errors.As(err, &apiErr):
			return PromQLValue{}, fmt.Errorf("query failed: %w", err)
		}
		// A transport error: its URL is the API's, without the query (sent
		// in the body) or credentials (net/http redacts them).
		return PromQLValue{}, err
	}
	return PromQLValueOf(v)
}

// queryTransport adds the User-Agent and the auth header to each request
// and bounds the answer (the API client reads it whole).
type queryTransport struct {
	base   http.RoundTripper
	header string
	auth   string // the header's value; never logged or evented
}

func (t *queryTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", "runbook-monitor")
	if t.header != "" {
		r.Header.Set(t.header, t.auth)
	}
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{r: io.LimitReader(resp.Body, maxQueryBody+1), c: resp.Body}
	return resp, nil
}

// limitedBody fails a read past maxQueryBody.
type limitedBody struct {
	r io.Reader
	c io.Closer
	n int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if b.n += int64(n); b.n > maxQueryBody {
		return n, fmt.Errorf("the answer is larger than %d MiB", maxQueryBody>>20)
	}
	return n, err
}

func (b *limitedBody) Close() error { return b.c.Close() }
