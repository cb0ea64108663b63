// Package reporter is the REPORT phase: it projects every event of the
// audit stream, in stream order, into a read model of the runs (status by
// the runstate fold) and, when a run is final, publishes its report.ready
// once — the seed's report JSON and QC summary, built by the pure package
// report from the run's history as the stream holds it.
//
// The projector reads the stream with an ordered consumer from the model's
// Position on, in batches (ApplyBatch stores a batch and the new position
// together), so a crash or a restart never applies an event twice and never
// skips one. The in-memory model starts at 0 (rebuilt from the stream at
// every start); the PostgreSQL one (package pgstore) goes on where it
// stopped. Whenever the projector has caught up with the stream it reports
// the final runs that have no report.ready (one that ended while the
// reporter was down is reported then, too).
//
// A read model several reporter processes share (a Leaser: PostgreSQL) is
// written by one of them at a time, the holder of its write lease; the
// others stand by and take over from the stored position (Run, standBy).
package reporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter/report"
)

// ConsumerName names the reporter's projector in the dead letters it
// publishes for messages of the stream that are no event (it reads the
// stream with an ordered consumer, not a durable one).
const ConsumerName = "reporter"

// errBuild marks a report that cannot be built: retrying will not help.
var errBuild = errors.New("report cannot be built")

// Options of the reporter.
type Options struct {
	// Model is the read model; default a new in-memory one.
	Model ReadModel
	// Batch is the most events applied at once (default 5000; see BENCHMARKS.md).
	Batch int
	// RetryMin and RetryMax bound the wait between attempts to store a
	// batch the model refused (database down): doubling from RetryMin
	// (default 200ms) up to RetryMax (default 10s), for as long as it takes.
	RetryMin, RetryMax time.Duration
	// TestsGrace is how long a run that ended while its tests or its watch
	// window ran (a rollback another service began) waits for the tester's
	// outcome and the monitor's monitor.completed before it is reported
	// without them (default 10s; both stop at the rollback and report
	// what they measured within milliseconds). Negative: no wait.
	TestsGrace time.Duration
	// StreamCheck is how often the projector compares the audit stream
	// with the read model's position while it reads (CheckStream; it also
	// does at every start of reading): a stream deleted and recreated
	// under a live reporter delivers nothing past the old position, so
	// only a look at the stream's state sees it. Default 5s; negative:
	// only at the start of reading.
	StreamCheck time.Duration
	// Instance names this reporter in the write lease of a shared read
	// model (logs, projection_state.lease_holder); default
	// <host>/<pid>.
	Instance string
	// LeaseTimeout is, with a read model several reporters share (a
	// Leaser: PostgreSQL), how long the holder of the write lease keeps it
	// once it stops answering — frozen, or cut off from the database —
	// before a standby takes over (one that exits or crashes is replaced
	// at once); also the longest a batch may take. Default 10s.
	LeaseTimeout time.Duration
	// ReportsDir, when set, receives <run_id>-report.json (the exact
	// report_json bytes of report.ready) each time the reporter publishes a
	// report, written atomically (temp file + rename), like the seed's
	// /var/log/deployments/<id>-report.json. Empty: no files.
	ReportsDir string
}

func (o *Options) setDefaults() {
	if o.Model == nil {
		o.Model = NewMemory()
	}
	if o.Batch <= 0 {
		o.Batch = 5000
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 200 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 10 * time.Second
	}
	if o.TestsGrace == 0 {
		o.TestsGrace = 10 * time.Second
	}
	if o.StreamCheck == 0 {
		o.StreamCheck = 5 * time.Second
	}
	if o.Instance == "" {
		host, _ := os.Hostname()
		o.Instance = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	if o.LeaseTimeout <= 0 {
		o.LeaseTimeout = 10 * time.Second
	}
}

// Service is the reporter.
type Service struct {
	bus     *eventbus.Bus
	o       Options
	log     *slog.Logger
	metrics *metrics
	model   ReadModel

	// reportMu guards published and waiting (reports are built side by
	// side, each run by one goroutine of reportPending at a time).
	reportMu sync.Mutex
	// published are runs this process reported whose report.ready the
	// model has not applied yet: not reported again meanwhile.
	published map[string]bool
	// waiting are final runs whose report waits for the tester's outcome,
	// since when (guarded by reportMu).
	waiting map[string]time.Time
	// pendingMu makes reportPending one at a time (the projector and the
	// re-check of waiting runs both call it).
	pendingMu sync.Mutex

	ready chan struct{} // closed once the projector first caught up
	once  sync.Once

	// streamMu guards created: when the stream this reporter reads was
	// created, as its first look at the stream saw it.
	streamMu sync.Mutex
	created  time.Time

	// leading: this process projects and reports (it holds the write
	// lease of a shared model, or its model is its own).
	leading atomic.Bool
}

// New makes the reporter. reg may be nil (metrics then go nowhere). The
// eventbus metrics are not used: the projector is not a Router.
func New(bus *eventbus.Bus, o Options, log *slog.Logger, _ *eventbus.Metrics, reg prometheus.Registerer) *Service {
	o.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	eventbus.Register(reg, newRunsCollector(o.Model, log, time.Now))
	return &Service{bus: bus, o: o, log: log, metrics: newMetrics(reg), model: o.Model,
		published: map[string]bool{}, waiting: map[string]time.Time{}, ready: make(chan struct{})}
}

// Model is the service's read model, for the CLI and the HTTP API.
func (s *Service) Model() ReadModel { return s.model }

// Ready is closed once the projector has caught up with the stream for the
// first time (the read model then holds every event published before).
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Leading reports whether this process projects and reports now: it holds
// the write lease of a shared read model (Leaser), or its model is its own.
func (s *Service) Leading() bool { return s.leading.Load() }

// Run projects the stream into the read model and reports final runs until
// ctx ends (then it returns nil). When the audit stream does not hold what
// the read model has projected (it was recreated or truncated: see
// ErrStreamBehind) it logs why at error level and returns the
// *StreamBehindError, naming the stream's and the model's sequences.
//
// With a read model several reporters share (a Leaser) it does so only
// while it holds the model's write lease; until then, and after losing it,
// it stands by (see standBy).
func (s *Service) Run(ctx context.Context) error {
	if l, ok := s.model.(Leaser); ok {
		return s.standBy(ctx, l)
	}
	s.leading.Store(true)
	defer s.leading.Store(false)
	return s.lead(ctx)
}

// standBy waits for the write lease, leads while it holds it (projecting
// from the stored position), and stands by again when it loses it, until
// ctx ends (it then releases the lease, so a standby takes over at once) or
// lead fails otherwise.
func (s *Service) standBy(ctx context.Context, l Leaser) error {
	log := s.log.With("instance", s.o.Instance)
	for {
		var lease Lease
		err := s.retry(ctx, "take the write lease", func() error {
			var err error
			lease, err = l.AcquireLease(ctx, s.o.Instance, s.o.LeaseTimeout, func(holder string) {
				log.Info("standing by: another reporter holds the read model's write lease", "holder", holder)
			})
			return err
		})
		if err != nil {
			return nil // ctx ended
		}
		s.metrics.leaseAcquired.Inc()
		s.metrics.leaseHeld.Set(1)
		log.Info("holding the read model's write lease: projecting and reporting", "token", lease.Token())
		lctx, cancel := context.WithCancelCause(ctx)
		go func() { // a lost lease ends the lead at once
			select {
			case <-lease.Done():
				cancel(lease.Err())
			case <-lctx.Done():
			}
		}()
		s.leading.Store(true)
		err = s.lead(lctx)
		s.leading.Store(false)
		lost := errors.Is(err, ErrLeaseLost) || errors.Is(context.Cause(lctx), ErrLeaseLost)
		cancel(nil)
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		lease.Release(rctx)
		rcancel()
		s.metrics.leaseHeld.Set(0)
		s.forget()
		switch {
		case ctx.Err() != nil:
			log.Info("write lease released")
			return nil
		case lost:
			s.metrics.leaseLost.Inc()
			if err == nil {
				err = context.Cause(lctx)
			}
			log.Warn("lost the read model's write lease; standing by", "err", err)
			continue
		}
		return err
	}
}

// forget drops what this process remembered of the runs it reported and
// of those waiting for their tests: after a lease it no longer holds, the
// leader's own memory is the one that counts.
func (s *Service) forget() {
	s.reportMu.Lock()
	defer s.reportMu.Unlock()
	clear(s.published)
	clear(s.waiting)
	s.metrics.waiting.Set(0)
}

// lead projects and reports: Run with a model of its own, or while this
// process holds the write lease.
func (s *Service) lead(ctx context.Context) error {
	started := time.Now()
	// pctx ends with ctx, or with the stream watch's *StreamBehindError as
	// its cause.
	pctx, fail := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer fail(nil) // first: ends the goroutines wg waits for
	wg.Go(func() { s.recheckWaiting(pctx) })
	wg.Go(func() { s.watchStream(pctx, fail) })
	for {
		err := s.project(pctx, started)
		if cause := context.Cause(pctx); errors.Is(cause, ErrStreamBehind) {
			err = cause
		}
		switch {
		case errors.Is(err, ErrStreamBehind):
			s.streamBehind(err)
			return err
		case errors.Is(err, ErrBehind):
			// The projection was reset (replay --rebuild) or the database
			// lost its last commits: read again from where it is.
			s.log.Warn("read model behind this reporter; reading the stream again from its position", "err", err)
			continue
		case ctx.Err() != nil:
			return nil
		}
		return err
	}
}

// streamBehind logs and counts the stop of a reporter whose stream is
// behind its read model.
func (s *Service) streamBehind(err error) {
	s.metrics.streamBehind.Inc()
	attrs := []any{"err", err}
	var e *StreamBehindError
	if errors.As(err, &e) {
		attrs = append(attrs, "stream", e.Stream, "stream_first_seq", e.FirstSeq, "stream_last_seq", e.LastSeq, "projected_seq", e.Position)
		s.metrics.streamLast.Set(float64(e.LastSeq))
	}
	s.log.Error("audit stream does not hold what the read model has projected; the reporter stops", attrs...)
}

// checkStream runs CheckStream and records the stream's last sequence. It
// also compares the stream's creation time with the one this reporter saw
// first: a stream recreated under a live reporter that grew past the
// model's position between two looks has had its events applied after the
// old stream's, and then the model's head is on the new stream.
func (s *Service) checkStream(ctx context.Context) error {
	seen, err := checkStream(ctx, s.bus, s.model)
	if err != nil {
		return err
	}
	s.metrics.streamLast.Set(float64(seen.LastSeq))
	s.streamMu.Lock()
	defer s.streamMu.Unlock()
	switch {
	case s.created.IsZero():
		s.created = seen.Created
	case !seen.Created.Equal(s.created):
		seen.ReadCreated = s.created
		return &seen
	}
	return nil
}

// watchStream checks the stream every StreamCheck until ctx ends, and
// ends ctx with the *StreamBehindError when the stream is behind.
func (s *Service) watchStream(ctx context.Context, fail context.CancelCauseFunc) {
	if s.o.StreamCheck < 0 {
		return
	}
	t := time.NewTicker(s.o.StreamCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.watchOnce(ctx); err != nil {
			fail(err)
			return
		}
	}
}

// watchOnce is one look of watchStream: the *StreamBehindError, or nil
// (a look that could not be taken is logged; the next one tries again).
func (s *Service) watchOnce(ctx context.Context) error {
	err := s.checkStream(ctx)
	switch {
	case errors.Is(err, ErrStreamBehind):
		return err
	case err != nil && ctx.Err() == nil:
		// NATS or the database unavailable: the projector waits them out
		// too; the next tick looks again.
		s.log.Warn("cannot compare the audit stream with the read model", "err", err)
	}
	return nil
}

// project tails the stream from the model's position, storing every batch
// and reporting whenever it has caught up, until ctx ends or the model
// says it is behind (ErrBehind) or the stream is behind the model
// (ErrStreamBehind).
func (s *Service) project(ctx context.Context, started time.Time) error {
	pos, err := s.position(ctx)
	if err != nil {
		return nil // ctx ended
	}
	if err := s.checkStream(ctx); errors.Is(err, ErrStreamBehind) {
		return err
	} else if err != nil && ctx.Err() == nil {
		// Tail waits NATS out; the stream watch looks again.
		s.log.Warn("cannot compare the audit stream with the read model", "err", err)
	}
	s.log.Info("projecting the audit stream", "from_seq", pos+1)
	applied := pos
	return s.bus.Tail(ctx, pos+1, s.o.Batch, func(b eventbus.Batch) error {
		for _, sk := range b.Skipped {
			s.skip(ctx, sk)
		}
		if len(b.Events) > 0 {
			if err := s.apply(ctx, applied, b.Events); err != nil {
				return err
			}
			applied = max(applied, b.Events[len(b.Events)-1].Seq)
		}
		if !b.CaughtUp {
			return nil
		}
		s.once.Do(func() {
			s.log.Info("read model caught up with the stream", "seq", b.LastSeq, "took", time.Since(started).Round(time.Millisecond))
			close(s.ready)
		})
		// The reports are built from histories that hold at least what the
		// read model has applied.
		s.reportPending(eventbus.AtLeast(ctx, max(applied, b.LastSeq)))
		return nil
	})
}

// skip records a message of the stream that is no event (the read model
// leaves it out): a log line, a count, and its event.dead_lettered by
// the reporter — the one consumer that reads every subject, so a message
// of a type no service consumes is dead-lettered too. A dead letter the
// reporter already published (a replay of the stream) is not published
// again.
func (s *Service) skip(ctx context.Context, sk eventbus.Skipped) {
	s.metrics.skipped.Inc()
	log := s.log.With("subject", sk.Subject, "seq", sk.Seq)
	dl := eventbus.DeadLetter(ConsumerName, sk.Subject, sk.Seq, 1, sk.Header, sk.Data, sk.Err)
	if dl == nil {
		log.Error("message on the audit stream is no event and names no run: skipped", "reason", sk.Err)
		return
	}
	log = log.With("run_id", dl.GetRunId())
	done := false
	err := s.bus.Scan(ctx, []string{eventbus.Subject(dl.GetRunId(), trust.DeadLettered)}, sk.Seq+1, func(e eventbus.Envelope) error {
		d := e.Event.GetEventDeadLettered()
		done = done || (d.GetConsumer() == ConsumerName && d.GetOriginalSequence() == sk.Seq)
		return nil
	})
	if err == nil && done {
		log.Warn("message on the audit stream is no event: skipped (dead-lettered before)", "reason", sk.Err)
		return
	}
	if err == nil {
		_, err = s.bus.Publish(ctx, dl)
	}
	if err != nil {
		log.Error("message on the audit stream is no event: skipped; its dead letter could not be published", "reason", sk.Err, "err", err)
		return
	}
	log.Error("message on the audit stream is no event: skipped, dead-lettered", "reason", sk.Err, "event", trust.DeadLettered)
}

// position reads the model's position, retrying while the model is down.
func (s *Service) position(ctx context.Context) (uint64, error) {
	var pos uint64
	err := s.retry(ctx, "read the projection's position", func() error {
		var err error
		pos, err = s.model.Position(ctx)
		return err
	})
	return pos, err
}

// apply stores a batch, retrying with backoff while the model refuses it
// (PostgreSQL down): nothing is read past what is not stored.
func (s *Service) apply(ctx context.Context, expected uint64, envs []eventbus.Envelope) error {
	t0 := time.Now()
	err := s.retry(ctx, "store events", func() error { return s.model.ApplyBatch(ctx, expected, envs) })
	if err != nil {
		return err
	}
	s.metrics.projected.Add(float64(len(envs)))
	s.metrics.batch.Observe(time.Since(t0).Seconds())
	s.metrics.position.Set(float64(envs[len(envs)-1].Seq))
	for _, env := range envs {
		if env.Event.GetReportReady() != nil {
			s.reportMu.Lock()
			delete(s.published, env.Event.GetRunId())
			delete(s.waiting, env.Event.GetRunId())
			s.metrics.waiting.Set(float64(len(s.waiting)))
			s.reportMu.Unlock()
		}
	}
	return nil
}

// retry calls fn until it succeeds or ctx ends, logging each failure.
func (s *Service) retry(ctx context.Context, what string, fn func() error) error {
	wait := s.o.RetryMin
	for attempt := 1; ; attempt++ {
		err := fn()
		if errors.Is(err, ErrBehind) || errors.Is(err, ErrLeaseLost) {
			return err // not a failure to wait out: the caller reads again, or stands by
		}
		if err == nil {
			if attempt > 1 {
				s.log.Info("read model back", "op", what, "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.metrics.storeErrors.Inc()
		s.log.Error("read model unavailable; retrying", "op", what, "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, s.o.RetryMax)
	}
}

// recheckWaiting reports the runs that wait for their tests' outcome once
// their wait is over, when no event arrives to trigger it.
func (s *Service) recheckWaiting(ctx context.Context) {
	if s.o.TestsGrace <= 0 {
		return // no run ever waits
	}
	t := time.NewTicker(max(10*time.Millisecond, min(time.Second, s.o.TestsGrace/4)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.reportMu.Lock()
		n := len(s.waiting)
		s.reportMu.Unlock()
		if n > 0 {
			s.reportPending(ctx)
		}
	}
}

// reportPending reports every final run without a report.ready.
func (s *Service) reportPending(ctx context.Context) {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	pending, err := s.model.Unreported(ctx)
	if err != nil {
		s.log.Error("cannot list unreported runs", "err", err)
		return
	}
	// Runs are independent: their reports are built and published side by
	// side (each waits for its publish to be stored, and for its file's
	// fsync), a bounded number at a time; each run appears once here.
	sem := make(chan struct{}, reportWorkers)
	var wg sync.WaitGroup
	for _, runID := range pending {
		s.reportMu.Lock()
		skip := s.published[runID]
		s.reportMu.Unlock()
		if skip {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := s.report(ctx, runID)
			switch {
			case errors.Is(err, errBuild):
				s.log.Error("cannot build the report of a final run", "run_id", runID, "err", err)
				s.markPublished(runID) // will not build on retry either
			case err != nil && ctx.Err() == nil:
				// Tried again the next time the projector catches up.
				s.log.Error("cannot publish the report of a final run", "run_id", runID, "err", err)
			}
		})
	}
	wg.Wait()
}

// reportWorkers bounds the reports built and published at once.
const reportWorkers = 16

// markPublished records that run's report is out (or will never be).
func (s *Service) markPublished(runID string) {
	s.reportMu.Lock()
	s.published[runID] = true
	s.reportMu.Unlock()
}

// report builds the report of a final run from its history as the stream
// holds it (stream order: the same bytes on every replay) and publishes
// report.ready once.
func (s *Service) report(ctx context.Context, runID string) error {
	history, err := s.bus.RunHistory(ctx, runID)
	if err != nil {
		return err
	}
	events := make([]*runbookv1.Event, 0, len(history))
	for _, env := range history {
		if env.Event.GetReportReady() != nil {
			s.markPublished(runID) // by another instance; the projector will apply it
			return nil
		}
		events = append(events, env.Event)
	}
	res, err := report.Generate(runID, events)
	if err != nil {
		return fmt.Errorf("%w: %w", errBuild, err)
	}
	if !res.Final {
		// The stream holds more of the run than the model applied and
		// in stream order the run is not over; a later event will end it.
		s.log.Info("run not final in stream order yet; report deferred", "run_id", runID, "status", res.Status)
		return nil
	}
	if (res.TestsPending || res.MonitorPending) && s.o.TestsGrace > 0 {
		what := "the tester's outcome"
		if !res.TestsPending {
			what = "the monitor's monitor.completed"
		} else if res.MonitorPending {
			what = "the tester's outcome and the monitor's monitor.completed"
		}
		s.reportMu.Lock()
		since, ok := s.waiting[runID]
		if !ok {
			since = time.Now()
			s.waiting[runID] = since
			s.metrics.waiting.Set(float64(len(s.waiting)))
		}
		s.reportMu.Unlock()
		if !ok {
			s.log.Info("run ended while its tests or watch window ran; waiting before reporting",
				"run_id", runID, "status", res.Status, "for", what, "up_to", s.o.TestsGrace.String())
		}
		if time.Since(since) < s.o.TestsGrace {
			return nil
		}
		s.log.Warn("not in time; reporting without it", "run_id", runID, "missing", what, "waited", s.o.TestsGrace.String())
	}
	s.reportMu.Lock()
	delete(s.waiting, runID)
	s.metrics.waiting.Set(float64(len(s.waiting)))
	s.reportMu.Unlock()

	ev := eventbus.CausedBy(eventbus.New(runID, &runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{
		Status:     string(res.Status),
		ReportJson: string(res.JSON),
		QcSummary:  res.QCSummary,
	}}), res.FinalEvent)
	seq, err := s.bus.PublishOnce(ctx, ev)
	if errors.Is(err, eventbus.ErrAlreadyPublished) {
		s.log.Info("report already published", "run_id", runID, "event", "report.ready")
		s.markPublished(runID)
		return nil
	}
	if err != nil {
		return fmt.Errorf("publish the report of run %s: %w", runID, err)
	}
	s.markPublished(runID)
	s.metrics.observe(res)
	if err := s.writeReportFile(runID, res.JSON); err != nil {
		// The report is published (the stream is the record); a missing
		// file is worth a loud log, not a retry that cannot republish.
		s.log.Error("cannot write the report file", "run_id", runID, "event", "report.ready", "err", err)
	}
	s.log.Info("report published", "run_id", runID, "event", "report.ready", "status", res.Status,
		"critical_issues", res.Report.Summary.CriticalIssues, "seq", seq)
	return nil
}

// writeReportFile writes data to <ReportsDir>/<runID>-report.json through
// a temporary file renamed into place, so a reader never sees half a report.
// Run ids are subject-safe (no "/"), so the name stays inside the dir.
func (s *Service) writeReportFile(runID string, data []byte) error {
	if s.o.ReportsDir == "" {
		return nil
	}
	if err := os.MkdirAll(s.o.ReportsDir, 0o750); err != nil {
		return fmt.Errorf("reports dir: %w", err)
	}
	name := filepath.Join(s.o.ReportsDir, runID+"-report.json")
	tmp, err := os.CreateTemp(s.o.ReportsDir, "."+runID+"-report-*.tmp")
	if err != nil {
		return fmt.Errorf("report file: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("rename to %s: %w", name, err)
	}
	return nil
}
