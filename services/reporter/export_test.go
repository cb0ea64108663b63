package reporter

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

type TestMetrics struct {
	Runs    *prometheus.CounterVec
	Reports prometheus.Counter
	Waiting prometheus.Gauge

	StreamLast   prometheus.Gauge
	StreamBehind prometheus.Counter
}

// MetricsForTest exposes the service's collectors to the external tests.
func (s *Service) MetricsForTest() TestMetrics {
	return TestMetrics{Runs: s.metrics.runs, Reports: s.metrics.reports, Waiting: s.metrics.waiting,
		StreamLast: s.metrics.streamLast, StreamBehind: s.metrics.streamBehind}
}

// WatchOnceForTest takes one look of the stream watch now.
func (s *Service) WatchOnceForTest(ctx context.Context) error { return s.watchOnce(ctx) }
