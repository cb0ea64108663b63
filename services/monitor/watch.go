package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/monitor/rules"
	"github.com/kis-core/runbook/services/monitor/source"
)

// RequestedBy is rollback.requested's requested_by for the monitor.
const RequestedBy = "monitor"

// watch is one run's window.
type watch struct {
	s        *Service
	runID    string
	cause    *runbookv1.Event // the run's deploy.started
	log      *slog.Logger
	rules    rules.Rules
	sources  []source.Source
	window   time.Duration
	interval time.Duration

	// Tallies for monitor.completed.
	samples      int
	sampleErrors int
	violations   int
	last, max    map[string]float64
	rollback     bool
	startedAt    time.Time
}

func newWatch(s *Service, cause *runbookv1.Event, m plan.Monitor, log *slog.Logger) *watch {
	w := &watch{
		s: s, runID: cause.RunId, cause: cause, log: log,
		rules:    rules.FromPlan(m),
		window:   m.EffectiveWindow(),
		interval: max(m.EffectiveInterval(), MinInterval),
		last:     map[string]float64{},
		max:      map[string]float64{},
	}
	cfg := source.Config{Client: s.o.HTTPClient, Timeout: min(s.o.RequestTimeout, w.interval)}
	for i, ps := range m.Sources {
		src, err := source.New(ps, cfg)
		if err != nil {
			// Kept as a broken source: each of its rounds is a sample error.
			log.Warn("monitor source is invalid", "source", i, "err", err)
		}
		w.sources = append(w.sources, src)
	}
	return w
}

// history is what the run's events say about its window so far.
type history struct {
	started         *runbookv1.Event
	violations      int
	max             map[string]float64
	rollbackByUs    *runbookv1.Event
	rollbackStarted *runbookv1.Event
}

func readHistory(evs []eventbus.Envelope) history {
	h := history{max: map[string]float64{}}
	for _, e := range evs {
		switch p := eventbus.Payload(e.Event).(type) {
		case *runbookv1.MonitorStarted:
			if h.started == nil {
				h.started = e.Event
			}
		case *runbookv1.ThresholdViolated:
			h.violations++
			if v, ok := h.max[p.Metric]; !ok || p.Value > v {
				h.max[p.Metric] = p.Value
			}
		case *runbookv1.RollbackRequested:
			if p.RequestedBy == RequestedBy {
				h.rollbackByUs = e.Event
			}
		case *runbookv1.RollbackStarted:
			h.rollbackStarted = e.Event
		}
	}
	return h
}

// run watches the window to its end (or an early stop) and publishes
// monitor.completed.
func (w *watch) run(ctx context.Context) error {
	evs, err := w.s.bus.RunHistory(ctx, w.runID)
	if err != nil {
		return err
	}
	h := readHistory(evs)
	if h.started != nil {
		// A redelivery: continue the same window. Samples taken before the
		// restart are on RUNBOOK_METRICS, not in these tallies; violations
		// are rebuilt from their events.
		w.violations = h.violations
		maps.Copy(w.max, h.max)
		w.log.Info("continuing the window after a restart", "started", h.started.GetTime().AsTime(), "violations", h.violations)
	}
	switch {
	case h.rollbackByUs != nil:
		w.rollback = true
		return w.complete(ctx, "stopped early: rollback requested: "+h.rollbackByUs.GetRollbackRequested().GetReason())
	case h.rollbackStarted != nil:
		// Already rolling back (e.g. the deploy failed at once): the
		// change is being undone, there is nothing left to watch.
		return w.complete(ctx, stoppedByRollback(h.rollbackStarted))
	}
	started := h.started
	if started == nil {
		if started, err = w.start(ctx); err != nil {
			return err
		}
	}

	w.startedAt = started.GetTime().AsTime()
	start, end := w.startedAt, w.startedAt.Add(w.window)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	// Ticks are numbered from the window's start, so a continued window
	// picks up at the next tick due and never reuses a tick's event ids.
	for tick := w.tickAt(time.Now()) + 1; ; tick++ {
		at := start.Add(time.Duration(tick) * w.interval)
		if at.After(end) {
			break
		}
		timer.Reset(time.Until(at))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		rs, err := w.s.bus.LastEvent(ctx, w.runID, "rollback.started")
		if err != nil {
			return err
		}
		if rs != nil {
			return w.complete(ctx, stoppedByRollback(rs.Event))
		}
		stop, err := w.tick(ctx, tick)
		if err != nil {
			return err
		}
		if stop != "" {
			return w.complete(ctx, stop)
		}
		// A round that overran its interval skips the ticks it missed.
		tick = max(tick, w.tickAt(time.Now()))
	}
	return w.complete(ctx, fmt.Sprintf("watch window of %s ended", w.window))
}

// reading is the worst value of one metric in a round, and its source.
type reading struct {
	value  float64
	source string
}

// round takes one sample from every source at once and publishes each
// sample. It returns the worst value of each metric (every metric the
// monitor judges is worse when higher) and the samples. A source whose
// round fails is logged and counted, never read as a value. The error is
// only ever the context's.
func (w *watch) round(ctx context.Context) (map[string]reading, []*runbookv1.MetricSample, error) {
	type result struct {
		samples []source.Sample
		err     error
		at      time.Time
	}
	results := make([]result, len(w.sources))
	var wg sync.WaitGroup
	for i, src := range w.sources {
		wg.Go(func() {
			ss, err := src.Collect(ctx)
			results[i] = result{samples: ss, err: err, at: time.Now()}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	worst := map[string]reading{}
	var out []*runbookv1.MetricSample
	for i, src := range w.sources {
		r := results[i]
		if r.err != nil {
			w.sampleErrors++
			w.s.met.sampleErrors.WithLabelValues(src.Kind()).Inc()
			w.log.Warn("sample error: the source measured nothing this round", "source", src.Name(), "err", r.err)
			continue
		}
		for _, smp := range r.samples {
			ms := &runbookv1.MetricSample{RunId: w.runID, Metric: smp.Metric, Value: smp.Value, Source: src.Name(), Time: timestamppb.New(r.at)}
			if err := w.s.bus.PublishSample(ctx, ms); err != nil {
				// Samples are not the audit record (breaches are): a lost
				// sample is logged, and the round still counts.
				w.log.Warn("publish sample failed", "metric", smp.Metric, "err", err)
			}
			w.s.met.samples.WithLabelValues(src.Kind(), smp.Metric).Inc()
			out = append(out, ms)
			if cur, ok := worst[smp.Metric]; !ok || smp.Value > cur.value {
				worst[smp.Metric] = reading{value: smp.Value, source: src.Name()}
			}
		}
	}
	return worst, out, nil
}

// tick is one round of the window: sample, judge, publish the breaches, and
// ask for a rollback when the auto-rollback rule holds. stop is the reason
// to end the window early, "" to go on.
func (w *watch) tick(ctx context.Context, n int) (stop string, err error) {
	worst, samples, err := w.round(ctx)
	if err != nil {
		return "", err
	}
	w.samples += len(samples)
	values := make(map[string]float64, len(worst))
	for metric, r := range worst {
		values[metric] = r.value
		w.last[metric] = r.value
		if m, ok := w.max[metric]; !ok || r.value > m {
			w.max[metric] = r.value
		}
	}
	w.log.Debug("round", "tick", n, "values", values)
	vs := w.rules.Evaluate(values)
	byMetric := map[string]*runbookv1.Event{}
	for _, v := range vs {
		ev := eventbus.CausedBy(eventbus.New(w.runID, &runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{
			Metric: v.Metric, Value: v.Value, Threshold: v.Threshold, Severity: v.Severity,
			Source: worst[v.Metric].source, AutoRollback: v.AutoRollback,
		}}, v.Metric, n), w.cause)
		if _, err := w.s.bus.Publish(ctx, ev); err != nil {
			return "", err
		}
		byMetric[v.Metric] = ev
		w.violations++
		w.s.met.violations.WithLabelValues(v.Metric, v.Severity).Inc()
		w.log.Warn("threshold violated", "tick", n, "metric", v.Metric, "value", v.Value, "threshold", v.Threshold, "severity", v.Severity, "source", worst[v.Metric].source)
	}
	v, ok := w.rules.ShouldAutoRollback(vs)
	if !ok {
		return "", nil
	}
	reason := w.rules.Reason(v)
	rr := eventbus.CausedBy(eventbus.New(w.runID, &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{
		Reason: reason, RequestedBy: RequestedBy, Metric: v.Metric, Value: v.Value, Threshold: v.Threshold,
	}}, RequestedBy), byMetric[v.Metric])
	if _, err := w.s.bus.Publish(ctx, rr); err != nil {
		return "", err
	}
	w.rollback = true
	w.s.met.rollbacks.Inc()
	w.log.Error("rollback requested", "tick", n, "reason", reason)
	return "stopped early: rollback requested: " + reason, nil
}

// complete publishes monitor.completed with the window's tallies.
func (w *watch) complete(ctx context.Context, reason string) error {
	if w.sampleErrors > 0 {
		reason = fmt.Sprintf("%s (%d sample errors)", reason, w.sampleErrors)
	}
	return w.s.complete(ctx, w.cause, &runbookv1.MonitorCompleted{
		Samples: int32(w.samples), Violations: int32(w.violations), RollbackRequested: w.rollback,
		Reason: reason, Last: w.last, Max: w.max,
	}, w.log)
}

// tickAt is the number of the last tick due at t.
func (w *watch) tickAt(t time.Time) int {
	return max(int(t.Sub(w.startedAt)/w.interval), 0)
}

func stoppedByRollback(rs *runbookv1.Event) string {
	p := rs.GetRollbackStarted()
	return fmt.Sprintf("stopped early: rollback started (requested by %s)", p.GetRequestedBy())
}

// start takes the baseline round and publishes monitor.started, whose time
// is the window's start.
func (w *watch) start(ctx context.Context) (*runbookv1.Event, error) {
	_, baseline, err := w.round(ctx)
	if err != nil {
		return nil, err
	}
	ev := eventbus.CausedBy(eventbus.New(w.runID, &runbookv1.Event_MonitorStarted{MonitorStarted: &runbookv1.MonitorStarted{
		Window: w.window.String(), Interval: w.interval.String(), Baseline: baseline,
	}}), w.cause)
	if _, err := w.s.bus.PublishOnce(ctx, ev); err != nil {
		if !errors.Is(err, eventbus.ErrAlreadyPublished) {
			return nil, err
		}
		// Another instance started this window first: use its start.
		env, err := w.s.bus.LastEvent(ctx, w.runID, "monitor.started")
		if err != nil {
			return nil, err
		}
		if env == nil {
			return nil, fmt.Errorf("monitor.started of run %s was refused as a duplicate but cannot be read", w.runID)
		}
		return env.Event, nil
	}
	w.log.Info("window started", "window", w.window, "interval", w.interval, "sources", len(w.sources), "baseline", len(baseline))
	return ev, nil
}
