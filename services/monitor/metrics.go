package monitor

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/eventbus"
)

// metrics of the monitor, registered on the process's registry (shared with
// the other services in `runbook serve`).
type metrics struct {
	samples      *prometheus.CounterVec
	sampleErrors *prometheus.CounterVec
	violations   *prometheus.CounterVec
	rollbacks    prometheus.Counter
	windows      prometheus.Gauge
	// scrapesInFlight: source rounds holding a scrape slot.
	scrapesInFlight prometheus.Gauge
	// decisionSeconds: from a round's end to its breach and rollback
	// events stored.
	decisionSeconds prometheus.Histogram
	// readRetries: history reads retried after a failure (retried).
	readRetries prometheus.Counter
	// missedTicks: window ticks nobody sampled because the monitor was
	// down, found by the monitor that took the window over.
	missedTicks prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &metrics{
		samples: eventbus.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbook_monitor_samples_total",
			Help: "Metric samples taken during watch windows, by source kind and metric.",
		}, []string{"source", "metric"})),
		sampleErrors: eventbus.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbook_monitor_sample_errors_total",
			Help: "Sample rounds of a source that measured nothing (probe or scrape failed), by source kind.",
		}, []string{"source"})),
		violations: eventbus.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbook_monitor_violations_total",
			Help: "Threshold violations published, by metric and severity.",
		}, []string{"metric", "severity"})),
		rollbacks: eventbus.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "runbook_monitor_rollbacks_requested_total",
			Help: "Rollbacks the monitor asked for (auto-rollback rule met).",
		})),
		windows: eventbus.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "runbook_monitor_windows_active",
			Help: "Watch windows running now.",
		})),
		scrapesInFlight: eventbus.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "runbook_monitor_scrapes_in_flight",
			Help: "Source rounds (probes, scrapes, queries) holding one of the monitor's MaxScrapes slots.",
		})),
		decisionSeconds: eventbus.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "runbook_monitor_decision_seconds",
			Help:    "Time from the end of a round to its threshold.violated / rollback.requested events stored.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		})),
		readRetries: eventbus.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "runbook_monitor_read_retries_total",
			Help: "Reads of a run's history or samples that failed and were tried again (NATS restarting, a leader election).",
		})),
		missedTicks: eventbus.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "runbook_monitor_missed_ticks_total",
			Help: "Watch-window ticks nobody sampled because the monitor was down, found when a monitor took the window over (the window is extended by them, or fails closed).",
		})),
	}
}
