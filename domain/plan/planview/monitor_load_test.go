package planview

import (
	"strings"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/risk"
)

// describeYAML describes a plan that must be valid.
func describeYAML(t *testing.T, src string) string {
	t.Helper()
	p, issues := plan.Parse("p.yml", []byte(src))
	if p == nil {
		t.Fatalf("plan invalid: %v", issues)
	}
	return Describe(p, risk.Assess(p.RisksAndMitigations, p.Approval))
}

// section is the text of one section of a description (its title line to
// the next blank line).
func section(text, title string) string {
	_, rest, ok := strings.Cut(text, "\n"+title+"\n")
	if !ok {
		return ""
	}
	s, _, _ := strings.Cut(rest, "\n\n")
	return s + "\n"
}

type describeCase struct {
	name, yaml string
	want       []string
	notWant    []string
}

func runDescribeCases(t *testing.T, title string, cases []describeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := section(describeYAML(t, tc.yaml), title)
			for _, w := range tc.want {
				if !strings.Contains(s, w) {
					t.Errorf("%s lacks %q:\n%s", title, w, s)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(s, w) {
					t.Errorf("%s has %q:\n%s", title, w, s)
				}
			}
		})
	}
}

const probe = "monitor:\n  sources:\n    - http_probe: {url: http://api.internal/ping}\n"

// The monitor section shows each source with what it reads, the baseline,
// each watched metric's effective limits (plan.Monitor.Limits) in one
// line, shadow mode loudly, and the auto-rollback rule the gates make.
func TestDescribeMonitorGates(t *testing.T) {
	t.Parallel()
	runDescribeCases(t, "MONITOR", []describeCase{
		{
			name: "seed defaults with a probe",
			yaml: probe,
			want: []string{
				"window 30m, sample every 30s, baseline: up to 1m of samples before the deploy starts (default)",
				"1. http_probe GET http://api.internal/ping, 10 requests per sample → api_response_time_p95, error_rate",
				"api_response_time_p95  max 2100 ms (default) (critical 3150 ms = 2100 × 1.5 → rollback), fails on 1 sample, no data: fail after 3",
				"error_rate             max 0.01 (1%) (default) (critical 0.015 (1.5%) = 0.01 × 1.5 → rollback)",
				"not watched (no source reports them): active_connections 1000 (default), cpu_utilization 80% (default), memory_usage 85% (default)",
				"auto-rollback when any of:\n    - api_response_time_p95 > 3150, or no data for 3 samples in a row\n    - error_rate > 0.015, or no data for 3 samples in a row",
			},
			notWant: []string{"SHADOW"},
		},
		{
			name: "N of M, grace, no data after K",
			yaml: probe + "  gates:\n    api_response_time_p95: {max: 2100, for: 3 of 5, grace: 30s, no_data_after: 4}\n",
			want: []string{
				"api_response_time_p95  max 2100 ms (critical 3150 ms = 2100 × 1.5 → rollback), fails on 3 of 5 samples, grace 30s, no data: fail after 4",
				"- api_response_time_p95 > 3150 for 3 of 5 samples, or no data for 4 samples in a row",
			},
		},
		{
			name: "min gate rolling back: critical is bound ÷ factor",
			yaml: "monitor:\n  sources:\n    - prometheus_query: {url: http://p.internal:9090, queries: {throughput: 'sum(rate(x[1m]))'}}\n" +
				"  auto_rollback: {metrics: [], factor: 2}\n  gates:\n    throughput: {min: 10, rollback: true, no_data: warn}\n",
			want: []string{
				"throughput  min 10 (critical 5 = 10 ÷ 2 → rollback), fails on 1 sample, no data: warn after 3",
				"auto-rollback when throughput < 5\n",
			},
		},
		{
			name: "written critical without rollback",
			yaml: "monitor:\n  sources:\n    - system: {}\n  gates:\n    disk_usage: {max: 80, critical: 95, no_data: ignore}\n",
			want: []string{
				"1. system: this host → cpu_utilization, memory_usage, disk_usage of /",
				"disk_usage       max 80% (critical 95%, no rollback), fails on 1 sample, no data: ignored",
				"cpu_utilization  max 80% (default) (no critical bound: every breach a WARNING, no rollback)",
				"auto-rollback: off (no gate rolls back)",
			},
		},
		{
			name: "auto-rollback turned off",
			yaml: probe + "  auto_rollback: {metrics: []}\n",
			want: []string{
				"api_response_time_p95  max 2100 ms (default) (no critical bound: every breach a WARNING, no rollback)",
				"auto-rollback: off",
			},
			notWant: []string{"auto-rollback when"},
		},
		{
			name: "monitor in shadow mode",
			yaml: "monitor:\n  mode: shadow\n  baseline: 0s\n  auto_rollback: {metrics: [api_response_time_p95]}\n" +
				"  sources:\n    - http_probe: {url: http://api.internal/ping}\n    - alertmanager: {match: {service: api}}\n",
			want: []string{
				"baseline: off (one round when the deploy starts)",
				`2. alertmanager webhook: alerts labelled service="api" firing in the window → alert:<alertname>, CRITICAL, recorded (shadow: would roll back)`,
				"MODE SHADOW: violations are recorded, NOTHING IS ROLLED BACK (not even for an Alertmanager alert)",
				"api_response_time_p95  max 2100 ms (default) (critical 3150 ms = 2100 × 1.5, would roll back), fails on 1 sample, no data: fail after 3 · SHADOW: recorded, never rolls back",
				"auto-rollback: off (no gate rolls back)",
				`SHADOW, recorded as "would have rolled back", never rolled back: api_response_time_p95 > 3150, or no data for 3 samples in a row; an alert matching an alertmanager source fires`,
			},
			notWant: []string{"auto-rollback when"},
		},
		{
			name: "shadow monitor, one gate enforcing",
			yaml: probe + "  mode: shadow\n  gates:\n    error_rate: {max: 0.02, mode: enforce}\n",
			want: []string{
				"MODE SHADOW: violations are recorded, NOTHING IS ROLLED BACK except by the gates with mode: enforce (error_rate)",
				"auto-rollback when error_rate > 0.03, or no data for 3 samples in a row\n",
				"SHADOW, recorded as \"would have rolled back\", never rolled back: api_response_time_p95 > 3150",
			},
		},
		{
			name: "a gate on a metric no source reports",
			yaml: probe + "  gates:\n    queue_depth: {max: 100}\n",
			want: []string{"queue_depth            max 100 (no critical bound: every breach a WARNING, no rollback), fails on 1 sample, no data: fail after 3 · NO SOURCE REPORTS IT"},
		},
		{
			name: "scrape metrics and an authenticated query",
			yaml: "monitor:\n  sources:\n    - prometheus_scrape:\n        url: http://a.internal/metrics\n        metrics:\n" +
				"          - {name: process_resident_memory_bytes, as: rss_bytes}\n" +
				"          - {name: http_errors_total, type: counter_rate, match: {path: /api, code: '500'}}\n" +
				"          - {name: http_request_duration_seconds, type: histogram_quantile, quantile: 0.99, scale: 1000, as: p99_ms}\n" +
				"    - prometheus_query:\n        url: http://p.internal:9090/\n        auth_env: PROM_KEY\n        auth_header: X-Api-Key\n" +
				"        queries: {queue_depth: \"max(\\n  queue_depth)\"}\n" +
				"    - system: {pid_file: /run/api.pid}\n" +
				"  thresholds: {rss_bytes: 1.0e9, queue_depth: 100}\n",
			want: []string{
				"1. prometheus_scrape http://a.internal/metrics\n",
				"    rss_bytes ← gauge process_resident_memory_bytes\n",
				`    http_errors_total ← per-second rate of counter http_errors_total{code="500",path="/api"}`,
				"    p99_ms ← p99 of histogram http_request_duration_seconds × 1000\n",
				"2. prometheus_query http://p.internal:9090/api/v1/query (header X-Api-Key from $PROM_KEY), every sample; a vector takes its highest element:\n    queue_depth ← max( queue_depth)",
				"3. system: the process of pid file /run/api.pid → cpu_utilization, memory_usage (its share of the host's CPUs and memory), process_rss_bytes",
				"    queue_depth      max 100 (no critical bound",
				"    rss_bytes        max 1000000000 (no critical bound",
			},
			notWant: []string{"NO SOURCE REPORTS IT"},
		},
	})
}

// The load test shows its model (closed, stages, open), duration, gates,
// early abort, regression and its requests by name, defaults filled in.
func TestDescribeLoadModel(t *testing.T) {
	t.Parallel()
	const req = "    requests:\n      - {url: http://api.internal/a}\n"
	runDescribeCases(t, "TEST", []describeCase{
		{
			name: "closed model defaults",
			yaml: "test:\n  load:\n" + req,
			want: []string{
				"load: 50 virtual users for 5m (closed model), think 1s, 1 request(s) per iteration",
				"pass when p95 ≤ 2100 ms and error rate ≤ 0.01 (1%)\n",
				"abort early: on",
				"regression: on, against the last passed load test of this change or target (alpha 0.01, effect floor 10%)",
				"    1. GET http://api.internal/a\n",
			},
		},
		{
			name: "stages",
			yaml: "test:\n  load:\n    stages: [{duration: 1m, target: 20}, {duration: 3m, target: 50}, {duration: 1m, target: 0}]\n" + req,
			want: []string{"load: virtual users ramped 0 → 20 over 1m → 50 over 3m → 0 over 1m, 5m in all, peak 50 (closed model), think 1s, 1 request(s) per iteration"},
		},
		{
			name:    "open model, default max in flight",
			yaml:    "test:\n  load:\n    rate: 12.5\n    duration: 30s\n" + req,
			want:    []string{"load: 12.5 iterations/s for 30s (open model: iterations start on schedule whatever the target does, latency counted from when each was due; at most 1000 in flight (default)), 1 request(s) per iteration"},
			notWant: []string{"think", "virtual users"},
		},
		{
			name: "percentiles, names, no abort, regression off",
			yaml: "test:\n  load:\n    rate: 5\n    max_in_flight: 50\n    abort_early: false\n    regression: {enabled: false}\n" +
				"    gates: {p95_ms: 800, error_rate: 0, percentiles: {max: 9000, p99.9: 4000, p50: 200}}\n" +
				"    requests:\n      - {name: list, url: http://api.internal/a}\n      - {method: POST, url: http://api.internal/b}\n",
			want: []string{
				"at most 50 in flight), 2 request(s) per iteration",
				"pass when p95 ≤ 800 ms, error rate ≤ 0 (0%), p50 ≤ 200 ms, p99.9 ≤ 4000 ms and max ≤ 9000 ms\n",
				"abort early: off",
				"regression: off (regression.enabled: false)",
				"    1. list: GET http://api.internal/a\n    2. POST http://api.internal/b\n",
			},
		},
		{
			name: "regression tuned",
			yaml: "test:\n  load:\n    regression: {alpha: 0.05, effect_floor: 0.2}\n" + req,
			want: []string{"regression: on, against the last passed load test of this change or target (alpha 0.05, effect floor 20%)"},
		},
	})
}
