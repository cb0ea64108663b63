package reporter

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/services/reporter/report"
)

// metrics of the reporter. They count what this process published: each run
// is counted once, by the instance whose report.ready the stream stored, so
// a restart (which rebuilds the model from the stream) counts nothing twice.
type metrics struct {
	runs    *prometheus.CounterVec
	phases  *prometheus.HistogramVec
	reports prometheus.Counter

	projected   prometheus.Counter
	batch       prometheus.Histogram
	position    prometheus.Gauge
	storeErrors prometheus.Counter
	skipped     prometheus.Counter
	waiting     prometheus.Gauge
	// streamLast and streamBehind: see CheckStream.
	streamLast   prometheus.Gauge
	streamBehind prometheus.Counter
	// The write lease of a shared read model (Leaser).
	leaseHeld     prometheus.Gauge
	leaseAcquired prometheus.Counter
	leaseLost     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &metrics{
		runs: eventbus.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbook_runs_total",
			Help: "Runs that reached a final status (counted when their report is published), by status.",
		}, []string{"status"})),
		phases: eventbus.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "runbook_phase_duration_seconds",
			Help: "How long each phase of a run took: preflight, deploy, verify (deploy.done to the final status), rollback, total.",
			// From a quick pre-flight to a day-long wait for approvals.
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400},
		}, []string{"phase"})),
		reports: eventbus.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "runbook_reports_published_total",
			Help: "report.ready events published by this process.",
		})),
		projected: eventbus.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "runbook_projection_events_total",
			Help: "Events of the audit stream this process applied to its read model.",
		})),
		batch: eventbus.Register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "runbook_projection_batch_seconds",
			Help:    "How long storing one batch of events in the read model took (retries included).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		})),
		position: eventbus.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "runbook_projection_position",
			Help: "The last stream sequence applied to the read model.",
		})),
		storeErrors: eventbus.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "runbook_projection_store_errors_total",
			Help: "Failed attempts to store a batch in the read model (each is retried).",
		})),
		skipped: eventbus.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "runbook_projection_skipped_total",
			Help: "Messages of the audit stream that are no event of the schema (garbage, a truncated or unknown payload, an unknown type): left out of the read model and dead-lettered.",
		})),
		streamLast: eventbus.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "runbook_audit_stream_last_seq",
			Help: "The audit stream's last sequence when the reporter last compared it with its read model (runbook_projection_position may trail it, never pass it).",
		})),
		streamBehind: eventbus.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "runbook_projection_stream_behind_total",
			Help: "Times the reporter stopped because the audit stream does not hold what its read model has projected (the stream was recreated or truncated).",
		})),
		leaseHeld: eventbus.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "runbook_reporter_lease_held",
			Help: "1 while this reporter holds the write lease of the shared read model (it projects and reports), 0 while it stands by.",
		})),
		leaseAcquired: eventbus.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "runbook_reporter_lease_acquired_total",
			Help: "Times this reporter took the write lease of the shared read model.",
		})),
		leaseLost: eventbus.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "runbook_reporter_lease_lost_total",
			Help: "Times this reporter lost the write lease to another (its database connection ended, or another took over) and stood by.",
		})),
		waiting: eventbus.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "runbook_reports_waiting_for_tests",
			Help: "Final runs whose report waits for the tester's outcome (the run ended while its tests ran).",
		})),
	}
}

func (m *metrics) observe(res *report.Result) {
	m.reports.Inc()
	m.runs.WithLabelValues(string(res.Status)).Inc()
	for _, p := range res.Phases {
		m.phases.WithLabelValues(p.Name).Observe(p.Duration.Seconds())
	}
}
