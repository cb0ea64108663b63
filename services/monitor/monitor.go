// Package monitor is the watch window after a change: on deploy.started it
// samples the plan's monitor sources every interval, publishes every
// sample (RUNBOOK_METRICS) and every threshold breach (threshold.violated),
// asks for a rollback once when a gate that rolls back fails, and closes
// the window with monitor.completed.
//
// The window is judged once the new release serves: it opens at the run's
// deploy.done (after the deploy steps, the health gate and the finally
// steps) and lasts the plan's whole window from there. The samples taken
// before, during the deploy, are published with during_deploy and never
// judged, so a maintenance page the plan serves is not the release's
// error. A plan with monitor.start: deploy_started is judged from
// monitor.started instead (canary-style steps).
//
// Times come from the run's events (monitor.started, deploy.done), so a
// handler that is called again after a crash continues the same window
// instead of starting a new one; a run that already has monitor.completed
// is left alone.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/runplan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/monitor/source"
)

// Durable is the consumer's name. Never rename it: a new name re-consumes
// the whole stream.
const Durable = "monitor"

// MinInterval bounds how often a window samples, whatever the plan says
// (the plan's defaults, domain/plan's, are the seed's: a 30-minute window
// sampled every 30 seconds).
const MinInterval = 100 * time.Millisecond

// ReasonNothingToWatch is monitor.completed's reason for a plan without
// monitor sources.
const ReasonNothingToWatch = "nothing to watch: the plan has no monitor sources"

// Options of the monitor.
type Options struct {
	Consumer eventbus.ConsumerOptions
	// HTTPClient makes the probes' and scrapes' requests (default: a client
	// of its own; each request is bounded by RequestTimeout).
	HTTPClient *http.Client
	// RequestTimeout bounds one probe request or scrape (default 5s, and
	// never more than the window's interval, so a round fits in its tick).
	RequestTimeout time.Duration
	// Sources is the base configuration of every source (e.g. Getenv for
	// auth_env, the Alertmanager receiver); Client and Timeout above win.
	Sources source.Config
	// MaxScrapes bounds the source rounds (probes, scrapes, queries) in
	// flight across all windows (default 64): many runs at once queue for
	// a slot instead of opening thousands of connections.
	MaxScrapes int
	// Jitter spreads the windows' ticks: each run's ticks are offset by a
	// fixed fraction of its interval in [0, Jitter), from its run id
	// (default 0.2, at most 0.5; negative: none).
	Jitter float64
	// CatchUp is how far a window may run past its end, in windows, to
	// make up the ticks it missed while its monitor was down (default 1:
	// at most one extra window; negative: nothing is made up). A window
	// that would need more was not watched: the monitor asks for a
	// rollback (fail closed; the deployer ends the run FAILED when the
	// plan has no executable rollback step).
	CatchUp float64
	// ReadRetry is how long a failed read of a run's history is retried,
	// with backoff, before the handler gives up to the router's retries
	// (default DefaultReadRetry); ReadTimeout bounds each attempt
	// (default DefaultReadTimeout).
	ReadRetry, ReadTimeout time.Duration
}

// DefaultConcurrency is how many windows (and baselines) one monitor
// holds at once by default: its consumer's MaxAckPending.
const DefaultConcurrency = 4096

// DefaultMaxScrapes is Options.MaxScrapes' default.
const DefaultMaxScrapes = 64

// Service is the monitor.
type Service struct {
	bus *eventbus.Bus
	o   Options
	log *slog.Logger
	m   *eventbus.Metrics
	met *metrics
	// scrapes holds one token per source round in flight.
	scrapes chan struct{}
}

// New makes the monitor.
func New(bus *eventbus.Bus, o Options, log *slog.Logger, m *eventbus.Metrics, reg prometheus.Registerer) *Service {
	o.Consumer.Durable = Durable
	if o.Consumer.Concurrency == 0 {
		// Each run's window holds its deploy.started for the deploy's
		// length (however long its steps and health gate take: nothing
		// here bounds it) and then the window's; the router's InProgress
		// heartbeats (every AckWait/3) keep the message meanwhile. Allow
		// many side by side (a window is a goroutine and a timer; the I/O
		// is bounded by MaxScrapes).
		o.Consumer.Concurrency = DefaultConcurrency
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.MaxScrapes <= 0 {
		o.MaxScrapes = DefaultMaxScrapes
	}
	if o.Sources.Alerts == nil {
		// The Alertmanager receiver (Handler) feeds the alertmanager sources.
		o.Sources.Alerts = source.NewAlerts(nil)
	}
	if o.Jitter == 0 {
		o.Jitter = 0.2
	}
	switch {
	case o.CatchUp == 0:
		o.CatchUp = 1
	case o.CatchUp < 0:
		o.CatchUp = 0
	}
	if o.ReadRetry <= 0 {
		o.ReadRetry = DefaultReadRetry
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{bus: bus, o: o, log: log, m: m, met: newMetrics(reg), scrapes: make(chan struct{}, o.MaxScrapes)}
}

// acquire takes a scrape slot, waiting while MaxScrapes rounds are in
// flight; release gives it back.
func (s *Service) acquire(ctx context.Context) error {
	select {
	case s.scrapes <- struct{}{}:
		s.met.scrapesInFlight.Inc()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Service) release() {
	<-s.scrapes
	s.met.scrapesInFlight.Dec()
}

// sources builds a plan's sources. A source that cannot be built is kept
// as a broken one: each of its rounds is a sample error and its metrics
// are missing (fail closed).
func (s *Service) sources(m plan.Monitor, interval time.Duration, log *slog.Logger) []source.Source {
	cfg := s.o.Sources
	cfg.Client, cfg.Timeout = s.o.HTTPClient, min(s.o.RequestTimeout, interval)
	var out []source.Source
	for i, ps := range m.Sources {
		src, err := source.New(ps, cfg)
		if err != nil {
			log.Warn("monitor source is invalid", "source", i, "err", err)
		}
		out = append(out, src)
	}
	return out
}

// Run consumes change.requested (the pre-deployment baseline) and
// deploy.started (the window) until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	r := eventbus.NewRouter(s.bus, s.o.Consumer, s.log, s.m)
	eventbus.On(r, "change.requested", s.onChangeRequested)
	eventbus.On(r, "deploy.started", s.onDeployStarted)
	return r.Run(ctx)
}

// onDeployStarted samples the run's deploy and watches its window, or
// continues them after a restart. It returns nil once monitor.completed is
// stored.
func (s *Service) onDeployStarted(ctx context.Context, ev *runbookv1.Event, _ *runbookv1.DeployStarted) error {
	run := ev.RunId
	log := s.log.With("run_id", run, "event", ev.Type)
	done, err := retried(ctx, s, log, "read last monitor.completed", func(ctx context.Context) (*eventbus.Envelope, error) {
		return s.bus.LastEvent(ctx, run, "monitor.completed")
	})
	if err != nil {
		return err
	}
	if done != nil {
		log.Info("window already completed; nothing to do")
		return nil
	}
	// The plan, as runplan.Load reads it, with the read retried.
	cr, err := retried(ctx, s, log, "read change.requested", func(ctx context.Context) (*eventbus.Envelope, error) {
		return s.bus.LastEvent(ctx, run, "change.requested")
	})
	if err != nil {
		return fmt.Errorf("load plan: %w", err)
	}
	if cr == nil {
		return eventbus.Permanent(fmt.Errorf("run %s: %w", run, runplan.ErrNoRun))
	}
	p, issues := plan.FromChangeRequest(cr.Event.GetChangeRequested())
	if p == nil {
		return eventbus.Permanent(fmt.Errorf("run %s: plan is invalid: %s", run, plan.Errors(issues)))
	}
	if len(p.Monitor.Sources) == 0 {
		log.Info(ReasonNothingToWatch)
		return s.complete(ctx, ev, &runbookv1.MonitorCompleted{Reason: ReasonNothingToWatch}, log)
	}
	w := newWatch(s, ev, p.Monitor, log)
	s.met.windows.Inc()
	defer s.met.windows.Dec()
	return w.run(ctx)
}

// complete publishes the run's monitor.completed, once per run: a second
// one (another instance, a redelivery) is refused by the stream and is not
// an error.
func (s *Service) complete(ctx context.Context, cause *runbookv1.Event, c *runbookv1.MonitorCompleted, log *slog.Logger) error {
	ev := eventbus.CausedBy(eventbus.New(cause.RunId, &runbookv1.Event_MonitorCompleted{MonitorCompleted: c}), cause)
	if _, err := s.bus.PublishOnce(ctx, ev); err != nil {
		if errors.Is(err, eventbus.ErrAlreadyPublished) {
			log.Info("monitor.completed was already published")
			return nil
		}
		return err
	}
	log.Info("window completed", "reason", c.Reason, "samples", c.Samples, "violations", c.Violations, "rollback_requested", c.RollbackRequested)
	return nil
}
