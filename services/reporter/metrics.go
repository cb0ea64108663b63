package reporter

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/domain/runstate"
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
	m := &metrics{
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
	// Every final status present at 0 from the start: an alert on
	// increase(runbook_runs_total{status="ROLLBACK_FAILED"}) sees the first.
	for _, st := range runstate.Statuses() {
		if st.Final() {
			m.runs.WithLabelValues(string(st))
		}
	}
	return m
}

func (m *metrics) observe(res *report.Result) {
	m.reports.Inc()
	m.runs.WithLabelValues(string(res.Status)).Inc()
	for _, p := range res.Phases {
		m.phases.WithLabelValues(p.Name).Observe(p.Duration.Seconds())
	}
}

// runsCollector reports the runs not yet final from the read model at
// every scrape, so the gauges are what the model holds (the same as
// `runbook runs`), never a count kept beside it:
//
//	runbook_runs_active{status}                  runs not yet final, by status (every non-final status, 0 included)
//	runbook_runs_waiting_seconds{status}         AWAITING_APPROVAL, WAITING_WINDOW: how long the run waiting longest has waited since its pre-flight passed (0: none waits)
//	runbook_runs_window_overdue_seconds          how long past its change window's opening a WAITING_WINDOW run still waits (0: none): the deployer is not starting it
//	runbook_runs_gauge_errors_total              scrapes whose read of the model failed (the gauges are then left out)
type runsCollector struct {
	model                    ReadModel
	log                      *slog.Logger
	now                      func() time.Time
	active, waiting, overdue *prometheus.Desc
	errors                   prometheus.Counter
}

// scrapeTimeout bounds the read of the model for one scrape.
const scrapeTimeout = 5 * time.Second

func newRunsCollector(model ReadModel, log *slog.Logger, now func() time.Time) *runsCollector {
	return &runsCollector{
		model: model, log: log, now: now,
		active: prometheus.NewDesc("runbook_runs_active",
			"Runs not yet final, by status, read from the reporter's read model at scrape time; AWAITING_APPROVAL and WAITING_WINDOW are the runs held at the gate.",
			[]string{"status"}, nil),
		waiting: prometheus.NewDesc("runbook_runs_waiting_seconds",
			"How long the run waiting longest in this status (AWAITING_APPROVAL, WAITING_WINDOW) has waited since its pre-flight passed; 0 when none waits.",
			[]string{"status"}, nil),
		overdue: prometheus.NewDesc("runbook_runs_window_overdue_seconds",
			"How long past its change window's opening a WAITING_WINDOW run still waits (the longest); 0 when none. Above a poll interval the deployer is not starting it.",
			nil, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "runbook_runs_gauge_errors_total",
			Help: "Scrapes whose read of the reporter's read model failed (runbook_runs_active and the waiting gauges are left out of that scrape).",
		}),
	}
}

// Describe implements prometheus.Collector.
func (c *runsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.active
	ch <- c.waiting
	ch <- c.overdue
	c.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *runsCollector) Collect(ch chan<- prometheus.Metric) {
	defer c.errors.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	g, err := c.read(ctx)
	if err != nil {
		c.errors.Inc()
		c.log.Warn("runs gauges: reading the read model failed; left out of this scrape", "err", err)
		return
	}
	for _, st := range runstate.Statuses() {
		if !st.Final() {
			ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(g.active[st]), string(st))
		}
	}
	for _, st := range []runstate.Status{runstate.AwaitingApproval, runstate.WaitingWindow} {
		ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, g.waiting[st].Seconds(), string(st))
	}
	ch <- prometheus.MustNewConstMetric(c.overdue, prometheus.GaugeValue, g.overdue.Seconds())
}

type runsGauges struct {
	active  map[runstate.Status]int
	waiting map[runstate.Status]time.Duration
	overdue time.Duration
}

// read counts the model's runs by non-final status and folds the waiting
// ones (few) for when their wait began and their window opens.
func (c *runsCollector) read(ctx context.Context) (runsGauges, error) {
	g := runsGauges{active: map[runstate.Status]int{}, waiting: map[runstate.Status]time.Duration{}}
	now := c.now()
	for _, st := range runstate.Statuses() {
		if st.Final() {
			continue
		}
		runs, err := c.model.Runs(ctx, RunFilter{Status: st})
		if err != nil {
			return g, fmt.Errorf("list %s runs: %w", st, err)
		}
		g.active[st] = len(runs)
		if st != runstate.AwaitingApproval && st != runstate.WaitingWindow {
			continue
		}
		for _, sum := range runs {
			r, err := c.model.Run(ctx, sum.RunID)
			if err != nil {
				return g, fmt.Errorf("read waiting run %s: %w", sum.RunID, err)
			}
			if r == nil || r.State.Status != st {
				continue // moved on since the listing
			}
			since := r.State.ReadyAt
			if since.IsZero() {
				since = sum.Started
			}
			g.waiting[st] = max(g.waiting[st], now.Sub(since))
			if st == runstate.WaitingWindow && !r.State.WaitingUntil.IsZero() {
				g.overdue = max(g.overdue, now.Sub(r.State.WaitingUntil))
			}
		}
	}
	return g, nil
}
