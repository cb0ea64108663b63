package source

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

// maxQueryBody bounds what one query's answer may be.
const maxQueryBody = 8 << 20

// PrometheusQuery runs the plan's PromQL instant queries against a
// Prometheus server's HTTP API each round, one metric per query.
type PrometheusQuery struct {
	api     string // <url>/api/v1/query
	name    string
	queries map[string]string
	metrics []string // sorted names of queries
	header  string
	auth    string // the header's value; never logged or evented
	client  *http.Client
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
	if len(p.Queries) == 0 {
		return nil, fmt.Errorf("prometheus_query %s: no queries", displayURL(u))
	}
	api := *u
	api.Path = strings.TrimSuffix(api.Path, "/") + "/api/v1/query"
	api.RawQuery, api.Fragment = "", ""
	q := &PrometheusQuery{
		api: api.String(), name: KindPrometheusQuery + " " + displayURL(u),
		queries: p.Queries, metrics: slices.Sorted(maps.Keys(p.Queries)),
		client: c.Client, timeout: c.Timeout,
	}
	if p.AuthEnv != "" {
		v, ok := c.Getenv(p.AuthEnv)
		if !ok || v == "" {
			return nil, fmt.Errorf("%s: auth_env %s is not set (it holds the %s header's value)", q.name, p.AuthEnv, p.EffectiveAuthHeader())
		}
		q.header, q.auth = p.EffectiveAuthHeader(), v
	}
	return q, nil
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
			v, err := q.one(ctx, q.queries[m])
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

// one runs one instant query.
func (q *PrometheusQuery) one(ctx context.Context, promql string) (PromQLValue, error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, q.api+"?"+url.Values{"query": {promql}}.Encode(), nil)
	if err != nil {
		return PromQLValue{}, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "runbook-monitor")
	if q.header != "" {
		req.Header.Set(q.header, q.auth)
	}
	resp, err := q.client.Do(req)
	if err != nil {
		// The URL in a client error is the API's plus the query: no secret.
		return PromQLValue{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxQueryBody))
	if err != nil {
		return PromQLValue{}, fmt.Errorf("read answer: %w", err)
	}
	v, perr := ParsePromQLResult(body)
	if resp.StatusCode != http.StatusOK {
		if perr != nil && strings.HasPrefix(perr.Error(), "query failed") {
			return PromQLValue{}, fmt.Errorf("status %s: %w", resp.Status, perr)
		}
		return PromQLValue{}, fmt.Errorf("status %s", resp.Status)
	}
	return v, perr
}
