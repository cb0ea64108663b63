package plan

import (
	"slices"
	"strings"
	"testing"
)

// monitor.thresholds and monitor.auto_rollback.metrics take the seed's five
// metrics and the metrics the plan's sources report; any other name is an
// error naming the field and every allowed name.
func TestMonitoredMetricNames(t *testing.T) {
	t.Parallel()
	const sources = `  sources:
    - prometheus_scrape:
        url: http://a.internal/metrics
        metrics:
          - {name: process_resident_memory_bytes, as: rss_bytes}
    - prometheus_query:
        url: http://prometheus.internal:9090
        queries: {queue_depth: 'sum(queue_depth)'}
    - system: {}
`
	cases := []struct {
		name, monitor string
		// wantPath is the field of the one error; "" means valid.
		wantPath string
		// wantNames must all be in the error's message.
		wantNames []string
	}{
		{name: "seed metric, no sources", monitor: "  thresholds: {cpu_utilization: 70}\n"},
		{name: "seed metric in auto_rollback", monitor: "  auto_rollback: {metrics: [memory_usage]}\n"},
		{name: "scrape metric threshold", monitor: sources + "  thresholds: {rss_bytes: 5.0e8}\n"},
		{name: "query metric threshold", monitor: sources + "  thresholds: {queue_depth: 100}\n"},
		{name: "system disk threshold", monitor: sources + "  thresholds: {disk_usage: 90}\n"},
		{name: "source metric in auto_rollback", monitor: sources + "  thresholds: {queue_depth: 100}\n  auto_rollback: {metrics: [error_rate, queue_depth]}\n"},
		{
			name: "unknown threshold without sources", monitor: "  thresholds: {queue_depth: 100}\n",
			wantPath: "monitor.thresholds.queue_depth", wantNames: KnownMetrics(),
		},
		{
			name: "unknown threshold with sources", monitor: sources + "  thresholds: {queue_dept: 100}\n",
			wantPath:  "monitor.thresholds.queue_dept",
			wantNames: append(KnownMetrics(), "rss_bytes", "queue_depth", "disk_usage", `did you mean "queue_depth"`, "monitor.sources report"),
		},
		{
			name: "unknown auto_rollback metric", monitor: sources + "  auto_rollback: {metrics: [error_rate, throughput]}\n",
			wantPath: "monitor.auto_rollback.metrics[1]", wantNames: append(KnownMetrics(), "rss_bytes", "queue_depth"),
		},
		{
			// The scrape family's name is not a metric once renamed by as.
			name: "scrape family renamed by as", monitor: sources + "  thresholds: {process_resident_memory_bytes: 5.0e8}\n",
			wantPath: "monitor.thresholds.process_resident_memory_bytes", wantNames: []string{"rss_bytes"},
		},
		{
			// A pid-file system source reports process_rss_bytes, a host one does not.
			name: "process_rss_bytes needs a pid file", monitor: sources + "  thresholds: {process_rss_bytes: 5.0e8}\n",
			wantPath: "monitor.thresholds.process_rss_bytes",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, issues := Parse("m.yml", []byte("monitor:\n"+tc.monitor))
			var errs []Issue
			for _, is := range issues {
				if !is.Warning {
					errs = append(errs, is)
				}
			}
			if tc.wantPath == "" {
				if p == nil || len(errs) > 0 {
					t.Fatalf("want valid, got %v", errs)
				}
				return
			}
			if p != nil || len(errs) != 1 || errs[0].Path != tc.wantPath {
				t.Fatalf("want one error at %s, got %v", tc.wantPath, errs)
			}
			msg := errs[0].Message
			if !strings.Contains(msg, "is not a metric the monitor measures") {
				t.Errorf("message %q does not say what is wrong", msg)
			}
			for _, n := range tc.wantNames {
				if !strings.Contains(msg, n) {
					t.Errorf("message %q lacks %q", msg, n)
				}
			}
		})
	}
}

// MonitoredMetrics lists the seed's five first, then the sources' others
// once each.
func TestMonitoredMetrics(t *testing.T) {
	t.Parallel()
	p, issues := Parse("m.yml", []byte(`monitor:
  sources:
    - http_probe: {url: http://a.internal/health}
    - system: {pid_file: /run/a.pid}
    - prometheus_query: {url: http://p.internal:9090, queries: {b_metric: up, a_metric: up}}
`))
	if p == nil {
		t.Fatal(issues)
	}
	want := append(KnownMetrics(), "a_metric", "b_metric", "process_rss_bytes")
	if got := MonitoredMetrics(p.Monitor); !slices.Equal(got, want) {
		t.Errorf("MonitoredMetrics = %v; want %v", got, want)
	}
}
