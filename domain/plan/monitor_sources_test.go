package plan

import (
	"slices"
	"testing"
)

// The new source kinds parse, with their defaults, and old plans keep
// working (a prometheus_scrape without metrics).
func TestMonitorSourcesParse(t *testing.T) {
	t.Parallel()
	p, issues := Parse("sources.yml", []byte(`monitor:
  sources:
    - prometheus_scrape:
        url: http://a.internal/metrics
        latency_histogram: http_request_duration_seconds
        errors_counter: http_errors_total
    - prometheus_scrape:
        url: http://a.internal/metrics
        metrics:
          - {name: process_resident_memory_bytes}
          - {name: http_errors_total, type: counter_rate, match: {path: /api}, as: errors_per_second}
          - {name: http_request_duration_seconds, type: histogram_quantile, quantile: 0.99, scale: 1000, as: latency_p99_ms}
    - prometheus_query:
        url: http://prometheus.internal:9090
        queries:
          api_response_time_p95: 'histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[1m])) by (le)) * 1000'
          error_rate: 'sum(rate(http_errors_total[1m])) / sum(rate(http_requests_total[1m]))'
        auth_env: PROM_TOKEN
    - system: {}
    - system: {pid_file: /run/estimator.pid}
    - alertmanager: {match: {service: estimator}}
`))
	if p == nil {
		t.Fatalf("plan invalid: %v", issues)
	}
	ss := p.Monitor.Sources
	kinds := make([]string, len(ss))
	for i, s := range ss {
		kinds[i] = s.Kind()
	}
	if want := []string{"prometheus_scrape", "prometheus_scrape", "prometheus_query", "system", "system", "alertmanager"}; !slices.Equal(kinds, want) {
		t.Fatalf("kinds = %v; want %v", kinds, want)
	}
	m := ss[1].PrometheusScrape.Metrics
	if m[0].EffectiveType() != ScrapeGauge || m[0].EffectiveAs() != "process_resident_memory_bytes" || m[0].EffectiveScale() != 1 ||
		m[1].EffectiveType() != ScrapeCounterRate || m[1].Match["path"] != "/api" ||
		m[2].EffectiveQuantile() != 0.99 || m[2].EffectiveScale() != 1000 || m[2].EffectiveAs() != "latency_p99_ms" {
		t.Errorf("metrics = %+v", m)
	}
	if q := ss[2].PrometheusQuery; q.EffectiveAuthHeader() != "Authorization" || len(q.Queries) != 2 {
		t.Errorf("query = %+v", q)
	}
	if ss[3].System.EffectiveDiskPath() != "/" || ss[4].System.PidFile != "/run/estimator.pid" {
		t.Errorf("system = %+v %+v", ss[3].System, ss[4].System)
	}
	want := []string{"api_response_time_p95", "cpu_utilization", "disk_usage", "error_rate", "errors_per_second", "latency_p99_ms", "memory_usage", "process_resident_memory_bytes", "process_rss_bytes"}
	if got := p.Monitor.SourceMetrics(); !slices.Equal(got, want) {
		t.Errorf("SourceMetrics = %v; want %v", got, want)
	}
}

// Each mistake is one error at its field's path and line.
func TestMonitorSourcesInvalid(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, yaml string
		want       []wantIssue
	}{
		{"scrape needs something to read", `monitor:
  sources:
    - prometheus_scrape: {url: "http://a/metrics"}
`, []wantIssue{{"monitor.sources[0].prometheus_scrape", 3, 26, "", []string{"needs latency_histogram", "metrics"}}}},
		{"error rate without a request count", `monitor:
  sources:
    - prometheus_scrape: {url: "http://a/metrics", errors_counter: e_total}
`, []wantIssue{{"monitor.sources[0].prometheus_scrape.requests_counter", 3, 26, "", []string{"set requests_counter"}}}},
		{"scrape metric fields", `monitor:
  sources:
    - prometheus_scrape:
        url: "http://a/metrics"
        metrics:
          - {name: "bad name", type: gauge}
          - {name: h, type: histogram, quantile: 0.9}
          - {name: g, quantile: 0.5}
          - {name: h2, type: histogram_quantile, quantile: 1.5, scale: -1, match: {"1x": a}}
          - {type: gauge, as: g}
`, []wantIssue{
			{"monitor.sources[0].prometheus_scrape.metrics[0].name", 6, 20, "bad name", []string{"not a Prometheus metric name"}},
			{"monitor.sources[0].prometheus_scrape.metrics[1].type", 7, 29, "histogram", []string{`"histogram" is not a scrape metric type`, "histogram_quantile"}},
			{"monitor.sources[0].prometheus_scrape.metrics[2].quantile", 8, 33, "0.5", []string{"quantile is for type histogram_quantile, not gauge"}},
			{"monitor.sources[0].prometheus_scrape.metrics[3].quantile", 9, 60, "1.5", []string{"out of range"}},
			{"monitor.sources[0].prometheus_scrape.metrics[3].scale", 9, 72, "-1", []string{"scale must be a positive number"}},
			{"monitor.sources[0].prometheus_scrape.metrics[3].match.1x", 9, 90, "a", []string{"not a Prometheus label name"}},
			{"monitor.sources[0].prometheus_scrape.metrics[4].name", 10, 13, "", []string{"name (the metric family in the /metrics text) is required"}},
			{"monitor.sources[0].prometheus_scrape.metrics[4].as", 10, 31, "g", []string{`metric "g" is already reported by metrics[2]`}},
		}},
		{"query fields", `monitor:
  sources:
    - prometheus_query:
        url: "prometheus:9090"
        queries: {"alert:x": up, ok: " "}
        auth_env: prom-token
        auth_header: "Bad Header"
`, []wantIssue{
			{"monitor.sources[0].prometheus_query.url", 4, 14, "prometheus:9090", []string{"not an http:// or https:// URL"}},
			{"monitor.sources[0].prometheus_query.queries.alert:x", 5, 30, "up", []string{"alertmanager source's"}},
			{"monitor.sources[0].prometheus_query.queries.ok", 5, 38, " ", []string{"the PromQL of ok is empty"}},
			{"monitor.sources[0].prometheus_query.auth_env", 6, 19, "prom-token", []string{"not an environment variable name"}},
			{"monitor.sources[0].prometheus_query.auth_header", 7, 22, "Bad Header", []string{"not an HTTP header name"}},
		}},
		{"query without queries, header without env", `monitor:
  sources:
    - prometheus_query: {url: "http://p:9090", auth_header: X-Token}
`, []wantIssue{
			{"monitor.sources[0].prometheus_query.queries", 3, 25, "", []string{"queries is required"}},
			{"monitor.sources[0].prometheus_query.auth_header", 3, 61, "X-Token", []string{"auth_header without auth_env"}},
		}},
		{"system pid file and disk", `monitor:
  sources:
    - system: {pid_file: /run/x.pid, disk_path: /var}
`, []wantIssue{{"monitor.sources[0].system.disk_path", 3, 49, "/var", []string{"use a second system source"}}}},
		{"alertmanager without match", `monitor:
  sources:
    - alertmanager: {}
`, []wantIssue{{"monitor.sources[0].alertmanager.match", 3, 21, "", []string{"match is required"}}}},
		{"two kinds", `monitor:
  sources:
    - system: {}
      alertmanager: {match: {a: b}}
`, []wantIssue{{"monitor.sources[0]", 3, 7, "", []string{"sets system and alertmanager"}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, issues := Parse("sources.yml", []byte(tc.yaml))
			if p != nil {
				t.Error("plan returned despite errors")
			}
			checkIssues(t, errorsOf(issues), tc.want)
		})
	}
}
