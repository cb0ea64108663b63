// Package monitor is the watch window after a change: on deploy.started it
// samples the plan's monitor sources every interval until the window ends,
// publishes every sample (RUNBOOK_METRICS) and every threshold breach
// (threshold.violated), asks for a rollback once when the seed's
// auto-rollback rule holds (an auto-rollback metric above 150 % of its
// threshold), and closes the window with monitor.completed.
//
// The window is measured from the run's monitor.started event, so a handler
// that is called again after a crash continues the same window instead of
// starting a new one; a run that already has monitor.completed is left alone.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/runplan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
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
}

// Service is the monitor.
type Service struct {
	bus *eventbus.Bus
	o   Options
	log *slog.Logger
	m   *eventbus.Metrics
	met *metrics
}

// New makes the monitor.
func New(bus *eventbus.Bus, o Options, log *slog.Logger, m *eventbus.Metrics, reg prometheus.Registerer) *Service {
	o.Consumer.Durable = Durable
	if o.Consumer.Concurrency == 0 {
		// Each run's window holds its deploy.started for up to the window's
		// length: allow many side by side.
		o.Consumer.Concurrency = 256
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{bus: bus, o: o, log: log, m: m, met: newMetrics(reg)}
}

// Run consumes deploy.started until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	r := eventbus.NewRouter(s.bus, s.o.Consumer, s.log, s.m)
	eventbus.On(r, "deploy.started", s.onDeployStarted)
	return r.Run(ctx)
}

// onDeployStarted watches the run's window, or continues it after a
// restart. It returns nil once monitor.completed is stored.
func (s *Service) onDeployStarted(ctx context.Context, ev *runbookv1.Event, _ *runbookv1.DeployStarted) error {
	run := ev.RunId
	log := s.log.With("run_id", run, "event", ev.Type)
	done, err := s.bus.LastEvent(ctx, run, "monitor.completed")
	if err != nil {
		return err
	}
	if done != nil {
		log.Info("window already completed; nothing to do")
		return nil
	}
	p, _, err := runplan.Load(ctx, s.bus, run)
	if err != nil {
		if errors.Is(err, runplan.ErrNoRun) {
			return eventbus.Permanent(err)
		}
		return fmt.Errorf("load plan: %w", err)
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
