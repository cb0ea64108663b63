package plan

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
)

// Monitor source kinds beyond the first two (types.go): a PromQL server, the
// host or one process, and Alertmanager's webhook.

// Kinds of a prometheus_scrape metrics entry.
const (
	ScrapeGauge             = "gauge"
	ScrapeCounterRate       = "counter_rate"
	ScrapeHistogramQuantile = "histogram_quantile"
)

// Metric names the system source reports.
const (
	MetricDisk       = "disk_usage"        // percent of the filesystem used
	MetricProcessRSS = "process_rss_bytes" // resident set of the pid file's process
)

// AlertMetricPrefix starts the metric of an alert the alertmanager source
// saw firing: alert:<alertname>.
const AlertMetricPrefix = "alert:"

// DefaultScrapeQuantile is a histogram_quantile entry's default quantile.
const DefaultScrapeQuantile = 0.95

// DefaultAuthHeader is the header prometheus_query's auth_env fills.
const DefaultAuthHeader = "Authorization"

var scrapeTypes = []string{ScrapeGauge, ScrapeCounterRate, ScrapeHistogramQuantile}

// ScrapeMetric is one series family read from a prometheus_scrape, summed
// over the label sets Match selects:
//
//	metrics:
//	  - {name: process_resident_memory_bytes, type: gauge, as: rss_bytes}
//	  - {name: http_errors_total, type: counter_rate, match: {path: /api}, as: errors_per_second}
//	  - {name: http_request_duration_seconds, type: histogram_quantile, quantile: 0.99, scale: 1000, as: latency_p99_ms}
type ScrapeMetric struct {
	// Name is the family in the exposition text.
	Name string `yaml:"name"`
	// Type: gauge (the value), counter_rate (per second between two
	// scrapes) or histogram_quantile (from the bucket deltas between two
	// scrapes). Default gauge.
	Type string `yaml:"type"`
	// Quantile of a histogram_quantile, in (0, 1]; default 0.95.
	Quantile float64 `yaml:"quantile"`
	// Match keeps the label sets whose labels have these exact values.
	Match map[string]string `yaml:"match"`
	// Scale multiplies the value (1000: seconds to milliseconds); default 1.
	Scale float64 `yaml:"scale"`
	// As is the metric the sample is named (thresholds and gates use it);
	// default Name.
	As string `yaml:"as"`
}

// PrometheusQuery runs PromQL instant queries against a Prometheus server's
// HTTP API (GET <url>/api/v1/query) every interval, one metric per query.
type PrometheusQuery struct {
	// URL of the Prometheus server (its API is <url>/api/v1/query).
	URL string `yaml:"url"`
	// Queries maps a metric name to the PromQL whose value it takes. A
	// vector result takes its highest element (every monitored metric is
	// worse when higher); an empty result or NaN is no sample.
	Queries map[string]string `yaml:"queries"`
	// AuthEnv names the environment variable holding the value of the
	// AuthHeader (e.g. "Bearer …"): the value never goes in the plan, in
	// events or in logs.
	AuthEnv string `yaml:"auth_env"`
	// AuthHeader is the header AuthEnv fills, default Authorization.
	AuthHeader string `yaml:"auth_header"`
}

// SystemSource samples the host's CPU, memory and disk (from /proc and
// statfs), or one process named by its pid file.
type SystemSource struct {
	// PidFile: sample this process (CPU % of the host's CPUs, memory % of
	// the host's memory, RSS bytes) instead of the host.
	PidFile string `yaml:"pid_file"`
	// DiskPath is the filesystem of disk_usage (host only), default "/".
	DiskPath string `yaml:"disk_path"`
}

// AlertmanagerSource counts the alerts Alertmanager posts to the monitor's
// webhook receiver: an alert whose labels match, firing during the run's
// window, is a critical violation (alert:<alertname>).
type AlertmanagerSource struct {
	// Match: the alert's labels must have these exact values (at least one).
	Match map[string]string `yaml:"match"`
}

// EffectiveType is the entry's type, default gauge.
func (m ScrapeMetric) EffectiveType() string { return or(m.Type, ScrapeGauge) }

// EffectiveQuantile is a histogram_quantile's quantile, default 0.95.
func (m ScrapeMetric) EffectiveQuantile() float64 { return orF(m.Quantile, DefaultScrapeQuantile) }

// EffectiveScale is the multiplier, default 1.
func (m ScrapeMetric) EffectiveScale() float64 { return orF(m.Scale, 1) }

// EffectiveAs is the sample's metric name, default the family's name.
func (m ScrapeMetric) EffectiveAs() string { return or(m.As, m.Name) }

// EffectiveAuthHeader is the header auth_env fills, default Authorization.
func (q PrometheusQuery) EffectiveAuthHeader() string { return or(q.AuthHeader, DefaultAuthHeader) }

// EffectiveDiskPath is the filesystem of disk_usage, default "/".
func (s SystemSource) EffectiveDiskPath() string { return or(s.DiskPath, "/") }

// SourceMetrics are the metric names the sources declare they report (the
// metrics of scrape entries, the queries' names, the system metrics), sorted;
// http_probe and a scrape's latency histogram report the seed's p95 and error
// rate, alertmanager reports alert:<alertname>, which no list can hold.
func (m Monitor) SourceMetrics() []string {
	var out []string
	for _, s := range m.Sources {
		switch {
		case s.HTTPProbe != nil:
			out = append(out, MetricP95, MetricErrorRate)
		case s.PrometheusScrape != nil:
			ps := s.PrometheusScrape
			if ps.LatencyHistogram != "" {
				out = append(out, MetricP95)
			}
			if ps.ErrorsCounter != "" {
				out = append(out, MetricErrorRate)
			}
			for _, sm := range ps.Metrics {
				out = append(out, sm.EffectiveAs())
			}
		case s.PrometheusQuery != nil:
			out = append(out, sortedKeys(s.PrometheusQuery.Queries)...)
		case s.System != nil:
			out = append(out, MetricCPU, MetricMemory)
			if s.System.PidFile == "" {
				out = append(out, MetricDisk)
			} else {
				out = append(out, MetricProcessRSS)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sources checks monitor.sources.
func (c *checker) sources(srcs []Source) {
	for i, s := range srcs {
		path := joinIndex("monitor.sources", i)
		switch c.oneOf(path, "a source", sourceKinds) {
		case "http_probe":
			pp := joinKey(path, "http_probe")
			c.httpURL(joinKey(pp, "url"), s.HTTPProbe.URL, true)
			c.method(joinKey(pp, "method"), s.HTTPProbe.Method)
			if c.set(joinKey(pp, "requests")) && s.HTTPProbe.Requests < 1 {
				c.errorf(joinKey(pp, "requests"), "requests must be at least 1 per interval (default 10)")
			}
		case "prometheus_scrape":
			c.prometheusScrape(joinKey(path, "prometheus_scrape"), s.PrometheusScrape)
		case "prometheus_query":
			c.prometheusQuery(joinKey(path, "prometheus_query"), s.PrometheusQuery)
		case "system":
			sp := joinKey(path, "system")
			if s.System.PidFile != "" && s.System.DiskPath != "" {
				c.errorf(joinKey(sp, "disk_path"), "disk_path is the host's disk: a system source with pid_file samples one process; use a second system source for the disk")
			}
			for _, f := range []struct{ name, v string }{{"pid_file", s.System.PidFile}, {"disk_path", s.System.DiskPath}} {
				if c.set(joinKey(sp, f.name)) && strings.TrimSpace(f.v) == "" {
					c.errorf(joinKey(sp, f.name), "%s is empty: leave it out or give a path", f.name)
				}
			}
		case "alertmanager":
			ap := joinKey(path, "alertmanager")
			if len(s.Alertmanager.Match) == 0 {
				c.errorf(joinKey(ap, "match"), "match is required: the alert labels of this run's systems, e.g. {service: estimator} (without it any alert anywhere would roll the change back)")
			}
			c.labelMatch(joinKey(ap, "match"), s.Alertmanager.Match)
		}
	}
}

func (c *checker) metricName(path, v string) {
	if v != "" && !metricName.MatchString(v) {
		c.errorf(path, "%q is not a Prometheus metric name: use letters, digits, _ and : ([a-zA-Z_:][a-zA-Z0-9_:]*)", v)
	}
}

func (c *checker) labelMatch(path string, m map[string]string) {
	for _, k := range sortedKeys(m) {
		if !labelName.MatchString(k) {
			c.errorf(joinKey(path, k), "%q is not a Prometheus label name: use letters, digits and _ ([a-zA-Z_][a-zA-Z0-9_]*)", k)
		}
	}
}

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

func (c *checker) prometheusScrape(pp string, ps *PrometheusScrape) {
	c.httpURL(joinKey(pp, "url"), ps.URL, true)
	for _, f := range []struct{ name, v string }{{"latency_histogram", ps.LatencyHistogram}, {"requests_counter", ps.RequestsCounter}, {"errors_counter", ps.ErrorsCounter}} {
		c.metricName(joinKey(pp, f.name), f.v)
	}
	if ps.LatencyHistogram == "" && ps.ErrorsCounter == "" && len(ps.Metrics) == 0 {
		c.errorf(pp, "a prometheus_scrape source needs latency_histogram (for the p95), errors_counter (for the error rate) and/or metrics (gauges, counter rates, histogram quantiles)")
	}
	if ps.ErrorsCounter != "" && ps.LatencyHistogram == "" && ps.RequestsCounter == "" {
		c.errorf(joinKey(pp, "requests_counter"), "an error rate needs the request count: set requests_counter (or latency_histogram, whose _count it is by default)")
	}
	seen := map[string]string{}
	if ps.LatencyHistogram != "" {
		seen[MetricP95] = "latency_histogram"
	}
	if ps.ErrorsCounter != "" {
		seen[MetricErrorRate] = "errors_counter"
	}
	for i, m := range ps.Metrics {
		mp := joinIndex(joinKey(pp, "metrics"), i)
		if c.required(joinKey(mp, "name"), m.Name, "name (the metric family in the /metrics text)") {
			c.metricName(joinKey(mp, "name"), m.Name)
		}
		c.enum(joinKey(mp, "type"), m.Type, "a scrape metric type", scrapeTypes)
		// (A type that is not one is its own error; its quantile is not.)
		if c.set(joinKey(mp, "quantile")) && slices.Contains(scrapeTypes, m.EffectiveType()) {
			if m.EffectiveType() != ScrapeHistogramQuantile {
				c.errorf(joinKey(mp, "quantile"), "quantile is for type histogram_quantile, not %s", m.EffectiveType())
			} else if !(m.Quantile > 0 && m.Quantile <= 1) {
				c.errorf(joinKey(mp, "quantile"), "quantile %v is out of range: use a fraction in (0, 1], e.g. 0.95", m.Quantile)
			}
		}
		if c.set(joinKey(mp, "scale")) && (m.Scale <= 0 || math.IsInf(m.Scale, 0) || math.IsNaN(m.Scale)) {
			c.errorf(joinKey(mp, "scale"), "scale must be a positive number (1000 turns seconds into milliseconds)")
		}
		c.labelMatch(joinKey(mp, "match"), m.Match)
		c.metricName(joinKey(mp, "as"), m.As)
		as := m.EffectiveAs()
		if prev, dup := seen[as]; dup && as != "" {
			at := joinKey(mp, "as")
			if !c.set(at) {
				at = joinKey(mp, "name")
			}
			c.errorf(at, "metric %q is already reported by %s of this source: give this one another name with as", as, prev)
		}
		seen[as] = fmt.Sprintf("metrics[%d]", i)
	}
}

func (c *checker) prometheusQuery(qp string, q *PrometheusQuery) {
	c.httpURL(joinKey(qp, "url"), q.URL, true)
	if len(q.Queries) == 0 {
		c.errorf(joinKey(qp, "queries"), "queries is required: metric name → PromQL, e.g. {error_rate: 'sum(rate(http_errors_total[1m])) / sum(rate(http_requests_total[1m]))'}")
	}
	for _, k := range sortedKeys(q.Queries) {
		kp := joinKey(joinKey(qp, "queries"), k)
		c.metricName(kp, k)
		if strings.TrimSpace(q.Queries[k]) == "" {
			c.errorf(kp, "the PromQL of %s is empty", k)
		}
		if strings.HasPrefix(k, AlertMetricPrefix) {
			c.errorf(kp, "%q: metrics named alert:… are the alertmanager source's; name the query otherwise", k)
		}
	}
	if c.set(joinKey(qp, "auth_env")) {
		c.env(joinKey(qp, "auth_env"), q.AuthEnv)
	}
	if q.AuthHeader != "" {
		if !headerName.MatchString(q.AuthHeader) {
			c.errorf(joinKey(qp, "auth_header"), "%q is not an HTTP header name: use letters, digits and - (e.g. Authorization, X-Api-Key)", q.AuthHeader)
		}
		if q.AuthEnv == "" {
			c.errorf(joinKey(qp, "auth_header"), "auth_header without auth_env: set auth_env to the NAME of the environment variable holding the header's value")
		}
	}
}
