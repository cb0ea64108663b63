package plan

import (
	"math"
	"testing"
)

func TestFormatMetric(t *testing.T) {
	t.Parallel()
	cases := []struct {
		metric string
		v      float64
		want   string
	}{
		{MetricErrorRate, 0.3, "30%"},
		{MetricErrorRate, 0.003, "0.3%"},
		{MetricErrorRate, 0.01, "1%"},
		{MetricErrorRate, 0.015, "1.5%"},
		{MetricErrorRate, 0, "0%"},
		{MetricErrorRate, 1.0 / 3, "33.3333%"},
		{MetricP95, 2350.04, "2350ms"},
		{MetricP95, 3200.44, "3200.4ms"},
		{MetricCPU, 81, "81%"},
		{MetricMemory, 85.123, "85.12%"},
		{MetricProcessRSS, 1024.4, "1024 bytes"},
		{MetricActiveConnections, 1000, "1000"},
		{"latency_p99_ms", 0.25, "0.25"},
		{MetricP95, math.NaN(), "NaNms"},
	}
	for _, c := range cases {
		if got := FormatMetric(c.metric, c.v); got != c.want {
			t.Errorf("FormatMetric(%s, %v) = %q, want %q", c.metric, c.v, got, c.want)
		}
	}
}
