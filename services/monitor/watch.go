package monitor

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/domain/vocab"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/monitor/rules"
	"github.com/kis-core/runbook/services/monitor/source"
	"github.com/kis-core/runbook/services/monitor/stats"
)

// RequestedBy is rollback.requested's requested_by for the monitor.
const RequestedBy = "monitor"

// watch is one run's window.
type watch struct {
	s     *Service
	runID string
	cause *runbookv1.Event // the run's deploy.started
	log   *slog.Logger
	judge *rules.Judge
	// alertsShadow: alert samples (rules.AlertDecisions) only record.
	alertsShadow bool
	sources      []source.Source
	window       time.Duration
	interval     time.Duration
	offset       time.Duration // the run's jitter: ticks at start + offset + n·interval
	baseline     time.Duration // the plan's pre-deployment baseline window
	// judgeFrom is the plan's monitor.start: deploy_done (the window opens
	// at deploy.done, the deploy's samples are not judged) or
	// deploy_started (the window opens at monitor.started).
	judgeFrom string

	// Tallies for monitor.completed.
	samples        int
	sampleErrors   int
	violations     int
	last, max      map[string]float64
	values         map[string][]float64 // judged value of each tick, per metric
	missing        map[string]int
	rollback       bool
	shadowRollback string
	startedAt      time.Time // monitor.started: the deploy's samples are ticked from it
	// openedAt is when the judged window opened (deploy.done, or
	// monitor.started with monitor.start: deploy_started); zero until then.
	openedAt time.Time
	// duringDeploy counts the samples taken during the deploy (recorded,
	// never judged); judgedRounds the judged rounds taken or replayed.
	duringDeploy int
	judgedRounds int
	// What of the window was watched (monitor.completed's observed_ms,
	// missed_ticks, down_ms): replayed is the ticks judged before a
	// restart (resume), covered the ticks this process watched (from its
	// first round to its last, a round that overran included), missed
	// the ticks nobody sampled because the monitor was down, down how
	// late that made the window (the window is extended by it).
	replayed, covered, missed int
	down                      time.Duration
}

func newWatch(s *Service, cause *runbookv1.Event, m plan.Monitor, log *slog.Logger) *watch {
	w := &watch{
		s: s, runID: cause.RunId, cause: cause, log: log,
		judge:        rules.NewJudge(m),
		alertsShadow: m.Mode == plan.ModeShadow,
		judgeFrom:    m.EffectiveStart(),
		window:       m.EffectiveWindow(),
		interval:     max(m.EffectiveInterval(), MinInterval),
		baseline:     m.EffectiveBaseline(),
		last:         map[string]float64{},
		max:          map[string]float64{},
		values:       map[string][]float64{},
		missing:      map[string]int{},
	}
	w.offset = jitter(w.runID, w.interval, s.o.Jitter)
	w.sources = s.sources(m, w.interval, log)
	return w
}

// jitter is the run's fixed offset in [0, frac·interval): many windows that
// start together do not scrape together, and a restarted monitor keeps the
// same schedule (it depends on the run id only).
func jitter(runID string, interval time.Duration, frac float64) time.Duration {
	if frac <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(runID))
	span := time.Duration(float64(interval) * min(frac, 0.5))
	if span <= 0 {
		return 0
	}
	return time.Duration(h.Sum64() % uint64(span))
}

// history is what the run's events say about its window so far: the run's
// fold (runstate: monitor.started, deploy.done, the rollback asked for or
// started, run.failed) and, from the same loop, the monitor's own tallies
// of its threshold.violated.
type history struct {
	*runstate.State
	violations     int
	max            map[string]float64
	shadowRollback string
}

func readHistory(runID string, evs []eventbus.Envelope) history {
	h := history{State: runstate.New(runID), max: map[string]float64{}}
	for _, e := range evs {
		if !h.ApplyAt(e.Seq, e.Event) {
			continue // an event id already folded
		}
		p := e.Event.GetThresholdViolated()
		if p == nil {
			continue
		}
		h.violations++
		if p.GetShadow() && p.GetGateFailed() && p.GetAutoRollback() && h.shadowRollback == "" {
			h.shadowRollback = p.Metric
		}
		if math.IsNaN(p.Value) {
			continue
		}
		if v, ok := h.max[p.Metric]; !ok || p.Value > v {
			h.max[p.Metric] = p.Value
		}
	}
	return h
}

// deployDone is the run's deploy.done, nil while the deploy runs or when
// it failed.
func (h history) deployDone() *runbookv1.Event {
	if h.DeployEnd.GetDeployDone() == nil {
		return nil
	}
	return h.DeployEnd
}

// run watches the window to its end (or an early stop) and publishes
// monitor.completed. With monitor.start: deploy_done (the default) it
// first samples the deploy, judging nothing, until the run's deploy.done;
// the window opens at deploy.done's time and is judged for its whole
// length from there.
func (w *watch) run(ctx context.Context) error {
	evs, err := retried(ctx, w.s, w.log, "read the run's history", func(ctx context.Context) ([]eventbus.Envelope, error) {
		return w.s.bus.RunHistory(ctx, w.runID)
	})
	if err != nil {
		return err
	}
	h := readHistory(w.runID, evs)
	if done := h.deployDone(); done != nil {
		w.openedAt = eventTime(done)
	}
	if w.judgeFrom == plan.StartDeployStarted && h.MonitorStart != nil {
		w.openedAt = eventTime(h.MonitorStart)
	}
	if h.MonitorStart != nil {
		// A redelivery: continue the same window, replaying its samples
		// so the N-of-M windows, the statistics and the ticks watched
		// carry on (also when it only closes the window: it says how
		// much of it was watched).
		w.startedAt = eventTime(h.MonitorStart)
		for _, b := range h.MonitorStart.GetMonitorStarted().GetBaseline() {
			w.judge.Seen(b.Metric)
		}
		if err := w.resume(ctx, h); err != nil {
			return err
		}
	}
	switch ours := h.RollbackRequestBy(RequestedBy); {
	case ours != nil:
		w.rollback = true
		w.violations = h.violations
		return w.complete(ctx, "stopped early: rollback requested: "+ours.GetRollbackRequested().GetReason())
	case w.stopReason(h.State) != "":
		// Already rolling back (e.g. the deploy failed at once) or
		// failed: there is nothing left to watch.
		w.violations = h.violations
		return w.complete(ctx, w.stopReason(h.State))
	}
	if h.MonitorStart == nil {
		started, err := w.start(ctx)
		if err != nil {
			return err
		}
		w.startedAt = eventTime(started)
		for _, b := range started.GetMonitorStarted().GetBaseline() {
			w.judge.Seen(b.Metric)
		}
	}
	if w.judgeFrom == plan.StartDeployStarted {
		w.openedAt = w.startedAt
	}
	if w.openedAt.IsZero() {
		opened, stop, err := w.awaitDeploy(ctx)
		if err != nil {
			return err
		}
		if stop != "" {
			return w.complete(ctx, stop)
		}
		w.openedAt = opened
		w.log.Info("window opened at deploy.done", "opened", opened, "during_deploy_samples", w.duringDeploy)
	}

	start, end := w.openedAt.Add(w.offset), w.openedAt.Add(w.window)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	// Ticks are numbered from the window's opening, so a continued window
	// picks up at the next tick due and never reuses a tick's event ids.
	// The last tick is at the window's end (the jitter only moves the
	// ones before it), so the window ends on time. The first round is
	// taken even when the opening was noticed a little late (less than an
	// interval): the window is judged for its whole length.
	now := time.Now()
	first := w.tickAt(w.openedAt, now) + 1
	if w.judgedRounds == 0 {
		first = max(first-1, 1)
	}
	// The ticks before the first one taken here that nobody judged were
	// missed: the monitor was down (killed, or NATS unreachable) while
	// they were due. A window with samples missing is not a passed
	// window: it is extended by as much (its judged ticks, before and
	// after, make up its whole length), or, when that would take it more
	// than CatchUp windows past its end, it was not watched.
	if missed := min(first-1, w.windowTicks()) - w.judgedRounds; missed > 0 {
		w.missed = missed
		w.down = time.Duration(missed)*w.interval + max(now.Sub(end), 0)
		w.s.met.missedTicks.Add(float64(missed))
		if w.down > w.maxCatchUp() {
			return w.notWatched(ctx)
		}
		end = later(end, now).Add(time.Duration(missed) * w.interval)
		w.log.Warn("the monitor was down during the window: watching the time it missed too", "missed_ticks", missed,
			"down", w.down, "ends", end, "catch_up", w.maxCatchUp())
	}
	final := !now.Before(end)
	for tick := first; !final; tick++ {
		at := start.Add(time.Duration(tick) * w.interval)
		if !at.Before(end) {
			at, final = end, true
		}
		timer.Reset(time.Until(at))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		if stop := w.stopped(ctx); stop != "" {
			return w.complete(ctx, stop)
		}
		stop, err := w.tick(ctx, tick)
		if err != nil {
			return err
		}
		w.covered = tick - first + 1
		if stop != "" {
			return w.complete(ctx, stop)
		}
		// A round that overran its interval skips the ticks it missed.
		tick = max(tick, w.tickAt(w.openedAt, time.Now()))
	}
	return w.complete(ctx, fmt.Sprintf("watch window of %s ended", w.window))
}

// ReasonDeployFailed is monitor.completed's reason when the deploy failed
// and nothing is rolled back (run.failed): the window never opens.
const ReasonDeployFailed = "stopped: the deploy failed"

// deployPoll is how often the monitor looks for deploy.done while the
// deploy runs (or every interval, when shorter), so the window opens
// promptly; its schedule comes from deploy.done's time either way.
const deployPoll = time.Second

// awaitDeploy samples the deploy until the run's deploy.done, whose time
// opens the window: a round every interval from monitor.started (the
// ticks' schedule, jitter included), each sample published with
// during_deploy and never judged. The wait has no bound of its own: a
// deploy takes as long as its steps and health gate take (the router's
// InProgress heartbeats keep the deploy.started message meanwhile). It
// ends without a window when the change is rolled back (rollback.started)
// or the run failed with nothing to undo (run.failed): stop says why.
func (w *watch) awaitDeploy(ctx context.Context) (opened time.Time, stop string, err error) {
	start := w.startedAt.Add(w.offset)
	tick := w.tickAt(w.startedAt, time.Now()) + 1
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		// Looked for right before each round: a round taken once
		// deploy.done is stored is not the deploy's.
		done, err := retried(ctx, w.s, w.log, "read last deploy.done", func(ctx context.Context) (*eventbus.Envelope, error) {
			return w.s.bus.LastEvent(ctx, w.runID, "deploy.done")
		})
		if err != nil {
			return time.Time{}, "", err
		}
		if done != nil {
			return eventTime(done.Event), "", nil
		}
		if stop := w.stopped(ctx); stop != "" {
			return time.Time{}, stop, nil
		}
		next := start.Add(time.Duration(tick) * w.interval)
		if !time.Now().Before(next) {
			_, samples, err := w.round(ctx, true)
			if err != nil {
				return time.Time{}, "", err
			}
			w.duringDeploy += len(samples)
			w.log.Debug("round during the deploy: recorded, not judged", "tick", tick, "samples", len(samples))
			tick = max(tick+1, w.tickAt(w.startedAt, time.Now())+1)
			next = start.Add(time.Duration(tick) * w.interval)
		}
		timer.Reset(min(time.Until(next), deployPoll))
		select {
		case <-ctx.Done():
			return time.Time{}, "", ctx.Err()
		case <-timer.C:
		}
	}
}

// stopped is why the window ends early, "" to go on: the change is being
// undone (rollback.started, whoever asked) or the run failed with nothing
// to undo (run.failed).
//
// It reads only those two events (it runs every round), folded as the run's
// fold does, and asks the same rule as the window's start (stopReason). A
// read that fails (NATS restarting) stops nothing: the window goes on
// watching, and the next round reads again.
func (w *watch) stopped(ctx context.Context) string {
	st := runstate.New(w.runID)
	for _, typ := range []string{"rollback.started", "run.failed"} {
		env, err := w.s.bus.LastEvent(ctx, w.runID, typ)
		if err != nil {
			w.s.met.readRetries.Inc()
			w.log.Warn("read failed; the window goes on and reads again next round", "read", "last "+typ, "err", err)
			return ""
		}
		if env != nil {
			st.ApplyAt(env.Seq, env.Event)
		}
	}
	return w.stopReason(st)
}

// stopReason is why the window ends early by the run's fold, "" to go on:
// its rollback started (whoever asked), or it failed with nothing to undo.
func (w *watch) stopReason(st *runstate.State) string {
	switch {
	case st.RollbackUnderWay():
		return stoppedByRollback(st.RollbackStart)
	case st.RunFailed != nil:
		return w.stoppedByRunFailed(st.RunFailed)
	}
	return ""
}

// stoppedByRunFailed is the reason for a run.failed: the deploy failed and
// nothing is rolled back (ReasonDeployFailed), or, once the release
// served, the run failed.
func (w *watch) stoppedByRunFailed(rf *runbookv1.Event) string {
	if w.openedAt.IsZero() || w.judgeFrom == plan.StartDeployStarted {
		return ReasonDeployFailed
	}
	reason := "stopped: the run failed"
	if r := rf.GetRunFailed().GetReason(); r != "" {
		reason += ": " + r
	}
	return reason
}

// eventTime is an event's time (now for an event stored without one).
func eventTime(ev *runbookv1.Event) time.Time {
	if ev.GetTime() == nil {
		return time.Now()
	}
	return ev.GetTime().AsTime()
}

// resume rebuilds the window's state after a restart: violations from
// their events, the samples since the window opened from RUNBOOK_METRICS
// (replayed tick by tick through the gates, their decisions already
// published); the samples taken during the deploy are only counted.
func (w *watch) resume(ctx context.Context, h history) error {
	w.violations = h.violations
	maps.Copy(w.max, h.max)
	if h.shadowRollback != "" {
		w.shadowRollback = h.shadowRollback + " (shadow)"
	}
	samples, err := retried(ctx, w.s, w.log, "read the run's samples", func(ctx context.Context) ([]*runbookv1.MetricSample, error) {
		return w.s.bus.RunSamples(ctx, w.runID)
	})
	if err != nil {
		return err
	}
	ticks := map[int][]*runbookv1.MetricSample{}
	for _, smp := range samples {
		if smp.GetDuringDeploy() {
			// Taken during the deploy: counted, never judged.
			w.duringDeploy++
			continue
		}
		t := smp.GetTime().AsTime()
		if w.openedAt.IsZero() || t.Before(w.openedAt) || t.Before(w.startedAt) {
			continue // before the window opened: the baseline
		}
		n := w.tickAt(w.openedAt, t)
		ticks[n] = append(ticks[n], smp)
	}
	for _, n := range slices.Sorted(maps.Keys(ticks)) {
		if n == 0 {
			continue // the baseline round taken at deploy.started
		}
		w.samples += len(ticks[n])
		w.judgedRounds++
		w.replayed++
		w.judgeRound(n, readings(ticks[n]), true)
	}
	w.log.Info("continuing the window after a restart", "started", w.startedAt, "opened", w.openedAt, "violations", h.violations,
		"ticks_replayed", w.judgedRounds, "during_deploy_samples", w.duringDeploy)
	return nil
}

// reading is one value of one metric in a round, and its source.
type reading struct {
	value  float64
	source string
}

func readings(ss []*runbookv1.MetricSample) map[string][]reading {
	out := map[string][]reading{}
	for _, s := range ss {
		out[s.Metric] = append(out[s.Metric], reading{value: s.Value, source: s.Source})
	}
	return out
}

// round takes one sample from every source at once (each holding one of
// the monitor's scrape slots) and publishes each sample, marked
// during_deploy when taken during the deploy (never judged). A source
// whose round fails is logged and counted, never read as a value; its
// metrics are missing this round. The error is only ever the context's.
func (w *watch) round(ctx context.Context, duringDeploy bool) (map[string][]reading, []*runbookv1.MetricSample, error) {
	type result struct {
		samples []source.Sample
		err     error
		at      time.Time
	}
	results := make([]result, len(w.sources))
	var wg sync.WaitGroup
	for i, src := range w.sources {
		wg.Go(func() {
			if err := w.s.acquire(ctx); err != nil {
				results[i] = result{err: err, at: time.Now()}
				return
			}
			defer w.s.release()
			ss, err := src.Collect(ctx)
			results[i] = result{samples: ss, err: err, at: time.Now()}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	by := map[string][]reading{}
	var out []*runbookv1.MetricSample
	for i, src := range w.sources {
		r := results[i]
		if r.err != nil {
			w.sampleErrors++
			w.s.met.sampleErrors.WithLabelValues(src.Kind()).Inc()
			w.log.Warn("sample error: the source measured nothing or not everything this round", "source", src.Name(), "err", r.err)
		}
		for _, smp := range r.samples {
			name := source.SampleSource(src, smp)
			ms := &runbookv1.MetricSample{RunId: w.runID, Metric: smp.Metric, Value: smp.Value, Source: name, Time: timestamppb.New(r.at), DuringDeploy: duringDeploy}
			if err := w.s.bus.PublishSample(ctx, ms); err != nil {
				// Samples are not the audit record (breaches are): a lost
				// sample is logged, and the round still counts.
				w.log.Warn("publish sample failed", "metric", smp.Metric, "err", err)
			}
			w.s.met.samples.WithLabelValues(src.Kind(), smp.Metric).Inc()
			out = append(out, ms)
			if !math.IsNaN(smp.Value) {
				by[smp.Metric] = append(by[smp.Metric], reading{value: smp.Value, source: name})
			}
		}
	}
	return by, out, nil
}

// worst is the value a gate judges: the highest of a max gate's readings,
// the lowest of a min gate's (several sources, one metric).
func (w *watch) worst(metric string, rs []reading) reading {
	g, _ := w.judge.Gate(metric)
	best := rs[0]
	for _, r := range rs[1:] {
		if (g.Below && r.value < best.value) || (!g.Below && r.value > best.value) {
			best = r
		}
	}
	return best
}

// judgeRound feeds one tick's readings to the gates and keeps the tallies.
// replay: rebuilding after a restart, the decisions are not returned.
func (w *watch) judgeRound(n int, by map[string][]reading, replay bool) ([]rules.Decision, map[string]reading) {
	worst := make(map[string]reading, len(by))
	values := make(map[string]float64, len(by))
	for metric, rs := range by {
		r := w.worst(metric, rs)
		worst[metric], values[metric] = r, r.value
		w.last[metric] = r.value
		w.values[metric] = append(w.values[metric], r.value)
		if m, ok := w.max[metric]; !ok || r.value > m {
			w.max[metric] = r.value
		}
	}
	// Missing: a gated metric expected (explicit, or seen before) without a
	// value this tick.
	for _, metric := range w.judge.Metrics() {
		if _, ok := values[metric]; !ok && w.judge.Expected(metric) {
			w.missing[metric]++
		}
	}
	elapsed := time.Duration(n)*w.interval + w.offset
	// Alerts from Alertmanager first: a firing alert rolls back at once.
	ds := append(rules.AlertDecisions(values, w.alertsShadow), w.judge.Observe(elapsed, values)...)
	if replay {
		return nil, worst
	}
	return ds, worst
}

// tick is one round of the window: sample, judge, publish the breaches, and
// ask for a rollback when a gate that rolls back failed. stop is the
// reason to end the window early, "" to go on.
func (w *watch) tick(ctx context.Context, n int) (stop string, err error) {
	by, samples, err := w.round(ctx, false)
	if err != nil {
		return "", err
	}
	w.samples += len(samples)
	w.judgedRounds++
	judged := time.Now()
	ds, worst := w.judgeRound(n, by, false)
	if len(ds) > 0 {
		defer func() { w.s.met.decisionSeconds.Observe(time.Since(judged).Seconds()) }()
	}
	w.log.Debug("round", "tick", n, "samples", len(samples), "decisions", len(ds))
	var (
		rollback *rules.Decision
		cause    *runbookv1.Event
	)
	for _, d := range ds {
		src := worst[d.Metric].source
		if d.NoData {
			src = "no data"
		}
		ev := eventbus.CausedBy(eventbus.New(w.runID, &runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{
			Metric: d.Metric, Value: d.Value, Threshold: d.Threshold, Severity: d.Severity,
			Source: src, AutoRollback: d.AutoRollback, Shadow: d.Shadow, NoData: d.NoData,
			WindowCritical: int32(d.Critical), WindowSize: int32(d.Size), WindowNeeded: int32(d.Needed),
			GateFailed: d.GateFailed, Below: d.Below,
		}}, d.Metric, n), w.cause)
		if _, err := w.s.bus.Publish(ctx, ev); err != nil {
			return "", err
		}
		w.violations++
		w.s.met.violations.WithLabelValues(d.Metric, d.Severity).Inc()
		w.log.Warn("threshold violated", "tick", n, "metric", d.Metric, "value", d.Value, "threshold", d.Threshold,
			"severity", d.Severity, "source", src, "window", fmt.Sprintf("%d of %d (needs %d)", d.Critical, d.Size, d.Needed),
			"gate_failed", d.GateFailed, "shadow", d.Shadow, "no_data", d.NoData)
		switch {
		case d.Rollback && rollback == nil:
			rollback, cause = &d, ev
		case d.WouldRollback && w.shadowRollback == "":
			w.shadowRollback = w.judge.Explain(d) + " (shadow)"
			w.log.Warn("shadow mode: a gate failed that would have rolled back", "tick", n, "reason", w.shadowRollback)
		}
	}
	if rollback == nil {
		return "", nil
	}
	d := *rollback
	reason := w.judge.Explain(d)
	rr := eventbus.CausedBy(eventbus.New(w.runID, &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{
		Reason: reason, RequestedBy: RequestedBy, Metric: d.Metric, Value: d.Value, Threshold: d.Threshold,
		Rule: d.Rule, WindowValues: d.Window, NoData: d.NoData,
	}}, RequestedBy), cause)
	if _, err := w.s.bus.Publish(ctx, rr); err != nil {
		return "", err
	}
	w.rollback = true
	w.s.met.rollbacks.Inc()
	w.log.Error("rollback requested", "tick", n, "reason", reason)
	return "stopped early: rollback requested: " + reason, nil
}

// complete publishes monitor.completed with the window's tallies: those
// of the judged samples, when the window opened, and how many samples
// were taken during the deploy.
func (w *watch) complete(ctx context.Context, reason string) error {
	if w.sampleErrors > 0 {
		reason = fmt.Sprintf("%s (%d sample errors)", reason, w.sampleErrors)
	}
	if w.shadowRollback != "" {
		reason += "; shadow mode: would have rolled back: " + w.shadowRollback
	}
	st := map[string]*runbookv1.MetricStats{}
	for metric, vs := range w.values {
		if s, ok := stats.Summarize(vs); ok {
			st[metric] = &runbookv1.MetricStats{Min: s.Min, Max: s.Max, Mean: s.Mean, P95: s.P95, Samples: int32(s.N)}
		}
	}
	for metric, n := range w.missing {
		if st[metric] == nil {
			st[metric] = &runbookv1.MetricStats{}
		}
		st[metric].Missing = int32(n)
	}
	mc := &runbookv1.MonitorCompleted{
		Samples: int32(w.samples), Violations: int32(w.violations), RollbackRequested: w.rollback,
		Reason: reason, Last: w.last, Max: w.max, Stats: st, ShadowRollback: w.shadowRollback,
		DuringDeploySamples: int32(w.duringDeploy),
		WindowMs:            w.window.Milliseconds(), MissedTicks: int32(w.missed), DownMs: w.down.Milliseconds(),
	}
	if !w.openedAt.IsZero() {
		mc.WindowOpened = timestamppb.New(w.openedAt)
		mc.ObservedMs = w.observed().Milliseconds()
	}
	return w.s.complete(ctx, w.cause, mc, w.log)
}

// windowTicks is how many judged rounds the window takes: ticks 1, 2, …
// at start + n·interval before its end, and the last one at its end.
func (w *watch) windowTicks() int {
	span := w.window - w.offset
	if span <= 0 {
		return 1
	}
	return int((span-1)/w.interval) + 1
}

// observed is how much of the window was judged: its share of the
// window's ticks judged before a restart and watched since.
func (w *watch) observed() time.Duration {
	n := w.windowTicks()
	return w.window * time.Duration(min(w.replayed+w.covered, n)) / time.Duration(n)
}

// maxCatchUp is how far past its end a window may run to make up the
// ticks its monitor missed (Options.CatchUp windows).
func (w *watch) maxCatchUp() time.Duration {
	return time.Duration(w.s.o.CatchUp * float64(w.window))
}

// enforces reports whether any of the window's gates may roll back (not
// every one in shadow mode).
func (w *watch) enforces() bool {
	if !w.alertsShadow {
		return true
	}
	for _, metric := range w.judge.Metrics() {
		if g, _ := w.judge.Gate(metric); !g.Shadow {
			return true
		}
	}
	return false
}

// notWatched closes a window its monitor was down for longer than it may
// make up: not a passed window. The monitor asks for a rollback (fail
// closed: the deployer rolls back, or, when the plan has no executable
// rollback step, ends the run FAILED), unless every gate is in shadow
// mode: then it records what it would have done.
func (w *watch) notWatched(ctx context.Context) error {
	reason := vocab.NotWatched(w.down.Milliseconds())
	w.log.Error("window not watched: the monitor was down longer than it may make up", "down", w.down,
		"missed_ticks", w.missed, "catch_up", w.maxCatchUp(), "observed", w.observed())
	if !w.enforces() {
		w.shadowRollback = reason + " (shadow)"
		return w.complete(ctx, reason)
	}
	rr := eventbus.CausedBy(eventbus.New(w.runID, &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{
		Reason: reason, RequestedBy: RequestedBy, NoData: true,
		Rule: fmt.Sprintf("a window its monitor missed ticks of is extended by at most %s", w.maxCatchUp()),
	}}, RequestedBy), w.cause)
	if _, err := w.s.bus.Publish(ctx, rr); err != nil {
		return err
	}
	w.rollback = true
	w.s.met.rollbacks.Inc()
	return w.complete(ctx, reason)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// tickAt is the number of the last tick due at t, counted from base (the
// window's opening; monitor.started for the deploy's rounds).
func (w *watch) tickAt(base, t time.Time) int {
	return max(int(t.Sub(base.Add(w.offset))/w.interval), 0)
}

func stoppedByRollback(rs *runbookv1.Event) string {
	p := rs.GetRollbackStarted()
	return fmt.Sprintf("stopped early: rollback started (requested by %s)", p.GetRequestedBy())
}

// start publishes monitor.started, whose time is when the deploy's rounds
// are ticked from (and the window's opening with monitor.start:
// deploy_started), with the baseline: the pre-deployment samples
// (baseline.go), or one round taken now when there are none (a round of
// the deploy's: during_deploy unless the deploy is judged).
func (w *watch) start(ctx context.Context) (*runbookv1.Event, error) {
	type pre struct {
		samples []*runbookv1.MetricSample
		span    time.Duration
	}
	b, err := retried(ctx, w.s, w.log, "read the run's samples (baseline)", func(ctx context.Context) (pre, error) {
		ss, span, err := w.s.preDeployBaseline(ctx, w.runID, w.cause.GetTime().AsTime())
		return pre{ss, span}, err
	})
	if err != nil {
		return nil, err
	}
	baseline, span := b.samples, b.span
	how := "one round at deploy.started"
	if len(baseline) > 0 {
		how = span.Round(time.Millisecond).String()
	} else {
		during := w.judgeFrom != plan.StartDeployStarted
		if _, baseline, err = w.round(ctx, during); err != nil {
			return nil, err
		}
		if during {
			w.duringDeploy += len(baseline)
		}
	}
	ev := eventbus.CausedBy(eventbus.New(w.runID, &runbookv1.Event_MonitorStarted{MonitorStarted: &runbookv1.MonitorStarted{
		Window: w.window.String(), Interval: w.interval.String(), Baseline: baseline, BaselineWindow: how,
		JudgeFrom: w.judgeFrom,
	}}), w.cause)
	if _, err := w.s.bus.PublishOnce(ctx, ev); err != nil {
		if !errors.Is(err, eventbus.ErrAlreadyPublished) {
			return nil, err
		}
		// Another instance started this window first: use its start.
		env, err := retried(ctx, w.s, w.log, "read last monitor.started", func(ctx context.Context) (*eventbus.Envelope, error) {
			return w.s.bus.LastEvent(ctx, w.runID, "monitor.started")
		})
		if err != nil {
			return nil, err
		}
		if env == nil {
			return nil, fmt.Errorf("monitor.started of run %s was refused as a duplicate but cannot be read", w.runID)
		}
		return env.Event, nil
	}
	w.log.Info("window started", "judge_from", w.judgeFrom, "window", w.window, "interval", w.interval, "offset", w.offset, "sources", len(w.sources), "baseline", len(baseline), "baseline_window", how)
	return ev, nil
}
