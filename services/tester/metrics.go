package tester

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/eventbus"
)

// metrics of the tester, registered on the process registry.
type metrics struct {
	tests        *prometheus.CounterVec
	loadRequests *prometheus.CounterVec
	loadLatency  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &metrics{
		tests: eventbus.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbook_tester_tests_total",
			Help: "Tests run by the tester, by type (smoke, regression, performance, load) and status (PASS, FAIL; STOPPED: a load test the run's rollback stopped).",
		}, []string{"type", "status"})),
		loadRequests: eventbus.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbook_tester_load_requests_total",
			Help: "Requests sent by load tests, by outcome (ok, error: non-2xx or transport failure).",
		}, []string{"outcome"})),
		loadLatency: eventbus.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "runbook_tester_load_request_duration_seconds",
			Help:    "Latency of load-test requests, from sending to the last byte of the answer.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 1.5, 2.1, 3, 5, 10, 30, 60},
		})),
	}
}
