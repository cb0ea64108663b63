// Package reporter is the REPORT phase: it consumes every event of every
// run, keeps a read model of the runs (status by the runstate fold), and
// when a run reaches a final status publishes its report.ready once — the
// seed's report JSON and QC summary, built by the pure package report.
//
// At start-up, before consuming, it rebuilds the read model from the whole
// audit stream and reports every final run that has no report.ready yet
// (one that ended while the reporter was down).
package reporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter/report"
)

// errBuild marks a report that cannot be built: retrying will not help.
var errBuild = errors.New("report cannot be built")

// Durable is the reporter's consumer. Never rename it: a new name
// re-consumes the whole stream.
const Durable = "reporter"

// Options of the reporter.
type Options struct {
	Consumer eventbus.ConsumerOptions
	// Model is the read model; default a new in-memory one.
	Model ReadModel
	// CatchUpAttempts is how often start-up tries to publish a missing
	// report before Run gives up with an error (default 3).
	CatchUpAttempts int
	// CatchUpBackoff is the wait between those attempts (default 1s).
	CatchUpBackoff time.Duration
	// ReportsDir, when set, receives <run_id>-report.json (the exact
	// report_json bytes of report.ready) each time the reporter publishes a
	// report, written atomically (temp file + rename), like the seed's
	// /var/log/deployments/<id>-report.json. Empty: no files.
	ReportsDir string
}

func (o *Options) setDefaults() {
	o.Consumer.Durable = Durable
	if o.Model == nil {
		o.Model = NewMemory()
	}
	if o.CatchUpAttempts <= 0 {
		o.CatchUpAttempts = 3
	}
	if o.CatchUpBackoff <= 0 {
		o.CatchUpBackoff = time.Second
	}
}

// BatchApplier is a ReadModel that can apply several events of the stream
// at once (one transaction): the start-up rebuild uses it when the model has it.
type BatchApplier interface {
	ApplyBatch(ctx context.Context, envs []eventbus.Envelope) error
}

// rebuildBatch is how many events the rebuild applies at once.
const rebuildBatch = 500

// Service is the reporter.
type Service struct {
	bus     *eventbus.Bus
	o       Options
	log     *slog.Logger
	em      *eventbus.Metrics
	metrics *metrics
	model   ReadModel

	// reportMu makes report building one at a time: a run is reported once,
	// and two handlers of the same run must not both read its history.
	reportMu sync.Mutex
}

// New makes the reporter. reg may be nil (metrics then go nowhere).
func New(bus *eventbus.Bus, o Options, log *slog.Logger, m *eventbus.Metrics, reg prometheus.Registerer) *Service {
	o.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{bus: bus, o: o, log: log.With("service", "reporter"), em: m, metrics: newMetrics(reg), model: o.Model}
}

// Model is the service's read model, for the CLI and the HTTP API.
func (s *Service) Model() ReadModel { return s.model }

// Runs lists every run the reporter knows, newest first.
func (s *Service) Runs(ctx context.Context) ([]RunSummary, error) { return s.model.Runs(ctx) }

// RunByID returns one run, or nil when there is none by that id. (Run is
// the service's run loop.)
func (s *Service) RunByID(ctx context.Context, runID string) (*Run, error) {
	return s.model.Run(ctx, runID)
}

// Start rebuilds the read model and reports the runs that ended unreported;
// Run calls it. It is exported for callers (tests, `runbook serve`) that
// want the model ready before consuming starts.
func (s *Service) Start(ctx context.Context) error {
	started := time.Now()
	n := 0
	batcher, _ := s.model.(BatchApplier)
	var batch []eventbus.Envelope
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := batcher.ApplyBatch(ctx, batch)
		batch = batch[:0]
		return err
	}
	err := s.bus.Scan(ctx, []string{eventbus.SubjectPrefix + ".>"}, 0, func(env eventbus.Envelope) error {
		n++
		if batcher == nil {
			_, err := s.model.Apply(ctx, env)
			return err
		}
		if batch = append(batch, env); len(batch) >= rebuildBatch {
			return flush()
		}
		return nil
	})
	if err == nil && batcher != nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("rebuild the read model from the audit stream: %w", err)
	}
	pending, err := s.model.Unreported(ctx)
	if err != nil {
		return fmt.Errorf("list unreported runs: %w", err)
	}
	s.log.Info("read model rebuilt", "events", n, "took", time.Since(started).Round(time.Millisecond), "unreported", len(pending))
	for _, runID := range pending {
		if err := s.catchUp(ctx, runID); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) catchUp(ctx context.Context, runID string) error {
	var err error
	for attempt := 1; attempt <= s.o.CatchUpAttempts; attempt++ {
		if err = s.report(ctx, runID); err == nil {
			return nil
		}
		if errors.Is(err, errBuild) {
			// A report that cannot be built will not build on retry either:
			// say so loudly and go on with the other runs.
			s.log.Error("cannot build the report of a final run", "run_id", runID, "err", err)
			return nil
		}
		s.log.Warn("catch-up report failed", "run_id", runID, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.o.CatchUpBackoff):
		}
	}
	return fmt.Errorf("report run %s that ended while the reporter was down: %w", runID, err)
}

// Run rebuilds the read model, catches up on unreported runs, then consumes
// every event type with the durable consumer until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // shut down while rebuilding: nothing was left half-done
		}
		return err
	}
	r := eventbus.NewRouter(s.bus, s.o.Consumer, s.log, s.em)
	for _, typ := range eventbus.Types() {
		r.Handle(typ, s.handle)
	}
	return r.Run(ctx)
}

// handle folds one delivered event into the read model; when its run is
// final and unreported, it reports it. A redelivered event is folded once,
// but still checked: a report whose publication failed is tried again.
func (s *Service) handle(ctx context.Context, ev *runbookv1.Event) error {
	a, err := s.model.Apply(ctx, eventbus.Envelope{Event: ev, Subject: eventbus.Subject(ev.GetRunId(), ev.GetType())})
	if err != nil {
		return fmt.Errorf("fold %s into run %s: %w", ev.GetType(), ev.GetRunId(), err)
	}
	if !a.Status.Final() || a.ReportReady {
		return nil
	}
	err = s.report(ctx, ev.GetRunId())
	if errors.Is(err, errBuild) {
		// Not this event's fault, and dead-lettering it would add an event
		// to the run that fails the same way: log it loudly instead.
		s.log.Error("cannot build the report of a final run", "run_id", ev.GetRunId(), "event", ev.GetType(), "err", err)
		return nil
	}
	return err
}

// report builds the report of a final run from its history as the stream
// holds it (stream order: the same bytes on every replay) and publishes
// report.ready once.
func (s *Service) report(ctx context.Context, runID string) error {
	s.reportMu.Lock()
	defer s.reportMu.Unlock()
	if run, err := s.model.Run(ctx, runID); err != nil {
		return fmt.Errorf("read run %s: %w", runID, err)
	} else if run != nil && run.Report != nil {
		return nil // reported meanwhile
	}

	history, err := s.bus.RunHistory(ctx, runID)
	if err != nil {
		return err
	}
	if err := s.model.Reconcile(ctx, runID, history); err != nil {
		return fmt.Errorf("reconcile run %s: %w", runID, err)
	}
	events := make([]*runbookv1.Event, 0, len(history))
	for _, env := range history {
		if env.Event.GetReportReady() != nil {
			return nil // reported by another instance; now in the model
		}
		events = append(events, env.Event)
	}
	res, err := report.Generate(runID, events)
	if err != nil {
		return fmt.Errorf("%w: %w", errBuild, err)
	}
	if !res.Final {
		// The model saw the events in another order than the stream holds
		// them; in stream order the run is not over yet. A later event
		// will end it.
		s.log.Info("run not final in stream order yet; report deferred", "run_id", runID, "status", res.Status)
		return nil
	}

	ev := eventbus.CausedBy(eventbus.New(runID, &runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{
		Status:     string(res.Status),
		ReportJson: string(res.JSON),
		QcSummary:  res.QCSummary,
	}}), res.FinalEvent)
	seq, err := s.bus.PublishOnce(ctx, ev)
	if errors.Is(err, eventbus.ErrAlreadyPublished) {
		s.log.Info("report already published", "run_id", runID, "event", "report.ready")
		return s.foldExisting(ctx, runID)
	}
	if err != nil {
		return fmt.Errorf("publish the report of run %s: %w", runID, err)
	}
	if _, err := s.model.Apply(ctx, eventbus.Envelope{Event: ev, Seq: seq, Subject: eventbus.Subject(runID, ev.GetType())}); err != nil {
		return fmt.Errorf("fold the report of run %s: %w", runID, err)
	}
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

// foldExisting folds the run's report.ready as stored, so the model stops
// asking for it.
func (s *Service) foldExisting(ctx context.Context, runID string) error {
	env, err := s.bus.LastEvent(ctx, runID, "report.ready")
	if err != nil {
		return err
	}
	if env == nil {
		return fmt.Errorf("run %s: report.ready refused as a duplicate but not found", runID)
	}
	_, err = s.model.Apply(ctx, *env)
	return err
}
