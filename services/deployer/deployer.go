// Package deployer is the ACT phase: once pre-flight passed and the gate is
// open (approvals), it runs the plan's deploy steps, its health checks and
// its finally steps; on a failed deploy or on rollback.requested it runs the
// rollback steps, exactly once per run. After a crash it continues from the
// run's own events: finished steps are not re-run; a step that started and
// never finished is re-run only if the plan marks it idempotent.
package deployer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/domain/gate"
	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/backup"
	"github.com/kis-core/runbook/eventbus/procio"
	"github.com/kis-core/runbook/eventbus/runplan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/deployer/steps"
)

// Durable is the consumer's name. Never rename it.
const Durable = "deployer"

// Options of the deployer.
type Options struct {
	Consumer eventbus.ConsumerOptions
	// Keyring holds the identities whose signed decisions count (approvals,
	// rejections, cancels, operators' rollback requests); nil trusts
	// unsigned ones (--insecure-no-auth).
	Keyring Keyring
	// Env looks up variables named by *_env fields (default os.LookupEnv).
	Env func(string) (string, bool)
	// StepFault, for tests only: called after each step that succeeded; an
	// error it returns makes the handler fail there, as a crash would.
	StepFault func(run, list string, index int) error
	// DeployOutcomeWait is how long a rollback waits for the outcome of a
	// deploy that another replica (or a dead deployer) started before it
	// ends the deploy's journal itself (default 5s; a live replica stops
	// its deploy within a second of rollback.started).
	DeployOutcomeWait time.Duration
	// StepStartFault, for tests only: called once a step's started event
	// is stored, before the step runs; an error it returns makes the
	// handler stop there, as if the process died mid-step.
	StepStartFault func(run, list string, index int) error
	// Now is the clock of the gate (default time.Now).
	Now func() time.Time
	// PollInterval is how often a run waiting at the gate is re-read
	// (default 500ms); events of the run handled here wake it at once.
	PollInterval time.Duration
	// Environment is backup_metadata.json's environment when a backup step
	// makes the run's backup directory: the seed's
	// ${ENVIRONMENT:-production} (default: Env("ENVIRONMENT"), else
	// "production"), as pre-flight's.
	Environment string
	// StateDir is where the deployer records its running step commands
	// (pids/, a journal per deployer process), swept at start: what a killed deployer's steps left
	// running is killed and the journal says so (default
	// DefaultStateDir()).
	StateDir string
}

// Service is the deployer.
type Service struct {
	bus   *eventbus.Bus
	o     Options
	log   *slog.Logger
	m     *eventbus.Metrics
	exec  *steps.Executor
	steps *prometheus.CounterVec
	stepT *prometheus.HistogramVec
	// rollbackFailed counts rollbacks that failed: production in an unknown state.
	rollbackFailed prometheus.Counter

	mu     sync.Mutex
	active map[string]*activeDeploy
	// holders are the runs whose gate a handler of this process holds,
	// with the channel that wakes it.
	holders map[string]chan struct{}
	// stopping is closed when Run's context ends: waits give their
	// message back at once instead of holding the shutdown.
	stopping <-chan struct{}
	// orphans are the step commands of dead deployers that the start-up
	// sweep found (orphanKey): the journal names what became of them.
	orphans map[string]procio.Orphan
}

type activeDeploy struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

var errRollbackRequested = errors.New("rollback requested")

// Keyring is where the deployer reads the identities it trusts (a file
// read again when it changes: auth.KeyringFile).
type Keyring interface {
	Keyring() (*trust.Keyring, error)
}

// keyring is the keyring now; nil when signatures are not required.
func (s *Service) keyring() (*trust.Keyring, error) {
	if s.o.Keyring == nil {
		return nil, nil
	}
	kr, err := s.o.Keyring.Keyring()
	if err != nil {
		return nil, fmt.Errorf("read the keyring: %w", err)
	}
	return kr, nil
}

// history reads the run and folds it, checking people's signatures.
func (s *Service) history(ctx context.Context, run string) (*runView, error) {
	hist, err := s.bus.RunHistory(ctx, run)
	if err != nil {
		return nil, err
	}
	kr, err := s.keyring()
	if err != nil {
		return nil, err
	}
	return viewOf(run, hist, kr), nil
}

// New makes the deployer.
func New(bus *eventbus.Bus, o Options, log *slog.Logger, m *eventbus.Metrics, reg prometheus.Registerer) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Env == nil {
		o.Env = os.LookupEnv
	}
	o.Consumer.Durable = Durable
	if o.Consumer.Concurrency == 0 {
		o.Consumer.Concurrency = 256
	}
	if o.Consumer.MaxDeliver == 0 {
		// A run waiting at the gate holds its message across restarts of
		// the process, each one a delivery: allow many.
		o.Consumer.MaxDeliver = 100
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 500 * time.Millisecond
	}
	if o.Environment == "" {
		o.Environment, _ = o.Env("ENVIRONMENT")
	}
	if o.Environment == "" {
		o.Environment = backup.DefaultEnvironment
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir()
	}
	if o.DeployOutcomeWait <= 0 {
		o.DeployOutcomeWait = 5 * time.Second
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Service{
		bus: bus, o: o, log: log, m: m,
		exec:    &steps.Executor{HTTP: &http.Client{}, Env: o.Env},
		active:  map[string]*activeDeploy{},
		holders: map[string]chan struct{}{},
		orphans: map[string]procio.Orphan{},
		steps: eventbus.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbook_steps_total", Help: "Deploy and rollback step attempts, by phase, kind and outcome.",
		}, []string{"phase", "kind", "outcome"})),
		rollbackFailed: eventbus.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "runbook_rollbacks_failed_total",
			Help: "Rollbacks that failed: production is in an unknown state. Alert on any increase.",
		})),
		stepT: eventbus.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "runbook_step_duration_seconds", Help: "Duration of step attempts, by phase and kind.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"phase", "kind"})),
	}
}

// Run consumes until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = ctx.Done()
	s.mu.Unlock()
	s.sweep() // before any message: a resumed step's journal names what was swept
	r := eventbus.NewRouter(s.bus, s.o.Consumer, s.log, s.m)
	eventbus.On(r, "preflight.passed", func(ctx context.Context, ev *runbookv1.Event, _ *runbookv1.PreflightResult) error {
		return s.deploy(ctx, ev)
	})
	eventbus.On(r, "approval.granted", func(ctx context.Context, ev *runbookv1.Event, _ *runbookv1.Approval) error {
		return s.deploy(ctx, ev)
	})
	eventbus.On(r, "approval.rejected", func(ctx context.Context, ev *runbookv1.Event, _ *runbookv1.Approval) error {
		return s.deploy(ctx, ev)
	})
	eventbus.On(r, "rollback.requested", s.rollback)
	return r.Run(ctx)
}

// runEnv is the run data a step gets as environment (never as code):
// RUNBOOK_IDEMPOTENCY_KEY (<run>/<list>/<index>/<attempt>) lets a step's
// target recognise a repeated attempt.
func runEnv(runID string, cr *runbookv1.Event, list string, index int, name string, attempt int32) map[string]string {
	return map[string]string{
		"RUNBOOK_RUN_ID":          runID,
		"RUNBOOK_CHANGE_ID":       cr.GetChangeRequested().GetChangeId(),
		"RUNBOOK_PHASE":           list,
		"RUNBOOK_STEP":            fmt.Sprint(index),
		"RUNBOOK_STEP_NAME":       name,
		"RUNBOOK_ATTEMPT":         fmt.Sprint(attempt),
		"RUNBOOK_IDEMPOTENCY_KEY": fmt.Sprintf("%s/%s/%d/%d", runID, list, index, attempt),
	}
}

// deploy opens the gate (package gate) and runs the deploy of ev's run.
//
// While the gate is closed the handler holds ev (the router keeps the
// message with heartbeats) and re-reads the run every PollInterval, or at
// once when another event of the run arrives here, until the gate opens,
// the run is rejected or it expires. Deadlines come from the run's events
// (pre-flight passed, the plan's window), never from when the wait began,
// so the message redelivered after a restart resumes the same wait.
func (s *Service) deploy(ctx context.Context, ev *runbookv1.Event) error {
	run := ev.RunId
	log := s.log.With("run_id", run)
	wake, mine := s.hold(run)
	if !mine {
		return nil // another handler here holds this run's gate: it was woken up
	}
	defer s.release(run)
	var v *runView
	var p *plan.Plan
	var cr *runbookv1.Event
	var err error
waitLoop:
	for {
		v, err = s.history(ctx, run)
		if err != nil {
			return err
		}
		if v.DeployStarted() && !v.DeployFinished() && v.DeployOver() && ownsDeploy(v, ev) {
			// This event's deploy was interrupted (its deployer stopped)
			// and the run went on without it: end its journal.
			return s.endInterrupted(ctx, ev, v)
		}
		if !v.PreflightPassed || v.DeployOver() {
			return nil // not open yet, or already decided
		}
		if p == nil {
			if p, cr, err = runplan.Load(ctx, s.bus, run); err != nil {
				return err
			}
		}
		if v.DeployStarted() {
			break
		}
		verdict, err := s.judge(ctx, ev, v, p, cr)
		if err != nil {
			return err
		}
		switch verdict.State {
		case gate.Open:
			break waitLoop
		case gate.Rejected, gate.Expired:
			log.Info("gate closed for good", "state", verdict.State, "reason", verdict.Reason)
			return nil
		}
		if err := s.wait(ctx, wake, verdict.Next()); err != nil {
			return err
		}
	}
	start := time.Now()
	if !v.DeployStarted() {
		st := eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: int32(len(p.Deploy.Steps))}}), ev)
		if _, err := s.bus.PublishOnce(ctx, st); err != nil && !errors.Is(err, eventbus.ErrAlreadyPublished) {
			return err
		}
		// The stream's order decides a race with a rejection (or a
		// cancel) published while the gate opened: read it again.
		if v, err = s.history(ctx, run); err != nil {
			return err
		}
	} else {
		log.Info("resuming deploy after a restart")
	}
	if v.Stopped != nil {
		log.Warn("the run was stopped before its deploy started: no step runs", "event", v.Stopped.GetType())
		return nil
	}
	if !ownsDeploy(v, ev) {
		log.Info("the deploy of this run belongs to the handler of another event", "deploy_caused_by", v.DeployStart.GetCausationId())
		return nil
	}

	dctx, cancel := context.WithCancelCause(ctx)
	a := &activeDeploy{cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	s.active[run] = a
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.active, run)
		s.mu.Unlock()
		cancel(nil)
		close(a.done)
	}()
	// A rollback (or a run.failed) decided by another replica stops this
	// deploy too: its running step's process group is killed at once.
	go s.stopOnRollbackElsewhere(dctx, run, cancel, log)

	if err := s.resolveReverted(ctx, p, v); err != nil {
		return err
	}
	var done int32
	ex := s.executor(p, cr, v) // redacts every secret the plan names
	failure := s.runList(dctx, ex, run, cr, "deploy", "steps", p.Deploy.Steps, v, &done)
	if failure == nil {
		failure = s.runHealth(dctx, ex, run, p.Deploy.Health, v, &done)
	}
	var fe *faultError
	if failure != nil && errors.As(failure.err, &fe) {
		return fe.err // as if the process died here: no outcome, redelivery resumes
	}
	interrupted := errors.Is(context.Cause(dctx), errRollbackRequested)
	if ctx.Err() != nil {
		return ctx.Err() // shutting down: the message is handed back, the run resumes
	}
	if !interrupted && len(p.Deploy.Finally) > 0 {
		if ferr := s.runList(ctx, ex, run, cr, "deploy", "finally", p.Deploy.Finally, v, &done); ferr != nil && failure == nil {
			failure = ferr
		}
	}
	fin := &runbookv1.DeployFinished{StepsSucceeded: done, DurationMs: time.Since(start).Milliseconds()}
	var out *runbookv1.Event
	if failure != nil {
		fin.Error = failure.err.Error()
		fin.FailedStep = failure.step
		out = eventbus.New(run, &runbookv1.Event_DeployFailed{DeployFailed: fin})
	} else {
		out = eventbus.New(run, &runbookv1.Event_DeployDone{DeployDone: fin})
	}
	if _, err := s.bus.Publish(ctx, eventbus.CausedBy(out, ev)); err != nil {
		return err
	}
	log.Info("deploy finished", "event", out.Type, "steps_succeeded", done)
	if failure != nil && !interrupted {
		rr := eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{
			Reason:      "deploy failed at " + failure.step + ": " + failure.err.Error(),
			RequestedBy: "deployer",
		}}, "deployer"), out)
		if _, err := s.bus.Publish(ctx, rr); err != nil {
			return err
		}
	}
	return nil
}

// resolveReverted gives the view of a revert run (plan.Reverts) the
// backup it restores from: the reverted run's backup directory, from its
// latest backup.done (pre-flight's or a backup step's: a run's backups
// share one directory). Pre-flight checked that it holds every file the
// restore steps name.
func (s *Service) resolveReverted(ctx context.Context, p *plan.Plan, v *runView) error {
	if p.Reverts == nil {
		return nil
	}
	bd, err := s.bus.LastEvent(ctx, p.Reverts.Run, "backup.done")
	if err != nil {
		return fmt.Errorf("read the backup of the reverted run %s: %w", p.Reverts.Run, err)
	}
	v.reverts = true
	if bd != nil {
		v.revertedBackup = bd.Event.GetBackupDone().GetDir()
	}
	s.log.Info("revert: restore steps read the reverted run's backup", "run_id", v.RunID, "reverts", p.Reverts.Run, "dir", v.revertedBackup)
	return nil
}

// ownsDeploy reports whether ev's handler runs the run's deploy: its
// deploy.started names ev as its cause (or names none).
func ownsDeploy(v *runView, ev *runbookv1.Event) bool {
	by := v.DeployStart.GetCausationId()
	return by == "" || by == ev.Id
}

// executor is s.exec for the steps of run v of plan p: it redacts every
// secret the plan names, and its backup steps know the run (steps.RunInfo).
func (s *Service) executor(p *plan.Plan, cr *runbookv1.Event, v *runView) *steps.Executor {
	return s.exec.ForPlan(p).ForRun(steps.RunInfo{Operator: cr.GetActor(), Environment: s.o.Environment, DeployStarted: v.DeployStartedAt()})
}

// recordBackup publishes backup.done for a backup step that took its
// backup (step index of list): the run's backup directory with every file
// it now holds, so a later step and the rollback (this process's or
// another's, after a crash) restore from it. It goes before the step's
// success: a crash between the two re-runs the step, which finds its
// backup taken and publishes the same event (the same id: deduplicated).
func (s *Service) recordBackup(ctx context.Context, run, list string, index int, res *backup.Result) error {
	bd := &runbookv1.BackupDone{Dir: res.Dir, Files: res.Metadata.Files, MetadataPath: res.MetadataPath}
	for _, d := range res.Metadata.FileDetails {
		bd.FileDetails = append(bd.FileDetails, &runbookv1.BackupFile{Name: d.Name, Size: d.Size, Sha256: d.SHA256})
	}
	if _, err := s.bus.Publish(ctx, eventbus.New(run, &runbookv1.Event_BackupDone{BackupDone: bd}, list, index)); err != nil {
		return fmt.Errorf("record the backup (backup.done): %w", err)
	}
	s.log.Info("backup done", "run_id", run, "event", "backup.done", "list", list, "step_index", index, "dir", res.Dir,
		"added", len(res.Added), "files", len(bd.Files), "already_taken", res.AlreadyTaken)
	return nil
}

// faultError is a test-injected crash: the handler returns it without
// recording an outcome, so the message is redelivered.
type faultError struct{ err error }

func (e *faultError) Error() string { return e.err.Error() }
func (e *faultError) Unwrap() error { return e.err }

type stepFailure struct {
	step string
	err  error
}

// runList runs one list of steps with ex (s.exec for the run's plan),
// skipping those the run already finished.
func (s *Service) runList(ctx context.Context, ex *steps.Executor, run string, cr *runbookv1.Event, phase, list string, ss []plan.Step, v *runView, done *int32) *stepFailure {
	for i, st := range ss {
		k := stepKey{list, int32(i)}
		name := st.Label()
		if v.succeeded[k] {
			if !st.IsManual() {
				*done++
			}
			continue
		}
		if v.dangling(k) {
			// Its deployer stopped mid-step: the attempt is recorded as
			// interrupted before anything else happens to the step.
			if _, err := s.closeInterrupted(ctx, run, k, v); err != nil {
				return &stepFailure{name, err}
			}
		}
		attempt := v.started[k]
		if v.cutLast[k] && !st.SafeToRerun() {
			return &stepFailure{name, fmt.Errorf("interrupted during step %d (%q): it started before a crash and never finished; it is not marked idempotent, so it is not re-run", i+1, name)}
		}
		// An attempt cut short by a crash is not a failure of the step: it
		// does not use up the step's retries.
		maxAttempts := int32(st.Retries) + 1 + v.cut[k]
		for {
			attempt++
			if attempt > maxAttempts {
				return &stepFailure{name, fmt.Errorf("step %q failed after %d attempt(s)", name, maxAttempts)}
			}
			if list != "finally" && phase == "deploy" {
				// The run's rollback began, or the run failed with nothing
				// to undo (run.failed), in another process: stop here.
				for _, typ := range []string{"rollback.started", "run.failed"} {
					if rb, err := s.bus.LastEvent(ctx, run, typ); err == nil && rb != nil {
						return &stepFailure{name, errRollbackRequested}
					}
				}
			}
			// A described step is shown to people, never executed: its
			// events say so (manual), and it counts as no step done.
			manual := st.IsManual()
			se := &runbookv1.StepEvent{Index: int32(i), Name: name, Kind: st.Kind(), Attempt: attempt, List: list, Manual: manual}
			if _, err := s.bus.Publish(ctx, stepEvent(run, phase, "started", se)); err != nil {
				return &stepFailure{name, err}
			}
			if s.o.StepStartFault != nil {
				if err := s.o.StepStartFault(run, list, i); err != nil {
					return &stepFailure{name, &faultError{err}}
				}
			}
			t0 := time.Now()
			env := runEnv(run, cr, list, i, name, attempt)
			if dir := v.stepBackupDir(st); dir != "" {
				env[steps.BackupDirEnv] = dir // the run's backup (a revert's: the reverted run's), for restore steps and commands
			}
			out := s.startOutput(ctx, run, list, i, attempt, ex.Secrets(st))
			// The command is recorded while it runs: if this deployer is
			// killed, the next one's start kills what the step left.
			sctx := procio.TrackPids(ctx, s.pidDir(), pidLabels(run, phase, list, int32(i), attempt, name))
			res := ex.RunOutput(sctx, st, env, out.write)
			out.close() // its last output event goes before the outcome
			if res.Err == nil && res.Backup != nil {
				if err := s.recordBackup(context.WithoutCancel(ctx), run, list, i, res.Backup); err != nil {
					res.Err = err
				} else {
					v.backupDir = res.Backup.Dir // the next steps' RUNBOOK_BACKUP_DIR
				}
			}
			s.stepT.WithLabelValues(phase, st.Kind()).Observe(time.Since(t0).Seconds())
			end := &runbookv1.StepEvent{Index: int32(i), Name: name, Kind: st.Kind(), Attempt: attempt, List: list,
				DurationMs: time.Since(t0).Milliseconds(), ExitCode: int32(res.ExitCode), OutputTail: res.OutputTail, Manual: manual}
			if cause := context.Cause(ctx); cause != nil && res.Err != nil {
				res.Err = fmt.Errorf("%w (%v)", cause, res.Err)
			}
			outcome, counted := "succeeded", "succeeded"
			if manual {
				counted = "manual"
			}
			if res.Err != nil {
				outcome, counted = "failed", "failed"
				end.Error = res.Err.Error()
			}
			s.steps.WithLabelValues(phase, st.Kind(), counted).Inc()
			if _, err := s.bus.Publish(context.WithoutCancel(ctx), stepEvent(run, phase, outcome, end)); err != nil {
				return &stepFailure{name, err}
			}
			s.log.Info("step", "run_id", run, "step", name, "list", list, "attempt", attempt, "outcome", outcome, "duration_ms", end.DurationMs)
			if res.Err == nil {
				if !manual {
					*done++
				}
				if s.o.StepFault != nil {
					if err := s.o.StepFault(run, list, i); err != nil {
						return &stepFailure{name, &faultError{err}}
					}
				}
				break
			}
			if ctx.Err() != nil {
				return &stepFailure{name, res.Err}
			}
			if attempt < maxAttempts {
				if !sleep(ctx, steps.Backoff(attempt, st.EffectiveRetryDelay())) {
					return &stepFailure{name, context.Cause(ctx)}
				}
			}
		}
	}
	return nil
}

// runHealth runs the seed's health_check(): initial delay, then up to
// attempts GETs at interval. ex (s.exec for the run's plan) redacts the
// plan's secrets from every result.
func (s *Service) runHealth(ctx context.Context, ex *steps.Executor, run string, hs []plan.HealthCheck, v *runView, done *int32) *stepFailure {
	for i, h := range hs {
		k := stepKey{"health", int32(i)}
		name := "health " + h.URL
		if v.succeeded[k] {
			*done++
			continue
		}
		if v.dangling(k) {
			if _, err := s.closeInterrupted(ctx, run, k, v); err != nil {
				return &stepFailure{name, err}
			}
		}
		attempt := v.started[k] + 1 // health checks only read: always safe to re-run
		se := &runbookv1.StepEvent{Index: int32(i), Name: name, Kind: "health", Attempt: attempt, List: "health"}
		if _, err := s.bus.Publish(ctx, stepEvent(run, "deploy", "started", se)); err != nil {
			return &stepFailure{name, err}
		}
		t0 := time.Now()
		attempts := h.EffectiveAttempts()
		var lines []string
		var last steps.Result
		ok := sleep(ctx, h.EffectiveInitialDelay())
		for n := 1; ok && n <= attempts; n++ {
			last = ex.Health(ctx, h)
			if last.Err == nil {
				lines = append(lines, last.OutputTail)
				break
			}
			lines = append(lines, fmt.Sprintf("attempt %d/%d: %v", n, attempts, last.Err))
			if n < attempts {
				ok = sleep(ctx, h.EffectiveInterval())
			}
		}
		if !ok {
			last.Err = fmt.Errorf("health check interrupted: %w", context.Cause(ctx))
		}
		end := &runbookv1.StepEvent{Index: int32(i), Name: name, Kind: "health", Attempt: attempt, List: "health",
			DurationMs: time.Since(t0).Milliseconds(), OutputTail: strings.Join(lines, "\n")}
		outcome := "succeeded"
		if last.Err != nil {
			outcome = "failed"
			end.Error = fmt.Sprintf("%s: UNHEALTHY after %d attempts: %v", h.URL, attempts, last.Err)
		}
		s.steps.WithLabelValues("deploy", "health", outcome).Inc()
		if _, err := s.bus.Publish(context.WithoutCancel(ctx), stepEvent(run, "deploy", outcome, end)); err != nil {
			return &stepFailure{name, err}
		}
		if last.Err != nil {
			return &stepFailure{name, errors.New(end.Error)}
		}
		*done++
	}
	return nil
}

// rollback runs the plan's rollback steps once per run, whoever asked.
func (s *Service) rollback(ctx context.Context, ev *runbookv1.Event, rr *runbookv1.RollbackRequested) error {
	run := ev.RunId
	log := s.log.With("run_id", run)
	p, cr, err := runplan.Load(ctx, s.bus, run)
	if err != nil {
		return err
	}
	if kr, err := s.keyring(); err != nil {
		return err
	} else if pub, known := eventbus.PublisherOf(ctx); kr != nil && (ev.GetSignature() != nil || rr.GetRequestedBy() == "operator" || (known && trust.MustBeSigned(pub.Role, ev.GetType()))) {
		// A person's request (whatever requested_by says), or one the
		// reporter relays from the dashboard, is a decision: it must be
		// signed.
		if _, err := trust.Verify(kr, ev, cr.GetChangeRequested().GetPlanSha256(), ""); err != nil {
			log.Warn("rollback request refused", "err", err)
			return eventbus.Permanent(fmt.Errorf("rollback request refused: %w", err))
		}
	}
	// A run that never deployed anything has nothing to roll back: the
	// rollback is recorded (it also stops the run) and runs no step.
	v, err := s.history(ctx, run)
	if err != nil {
		return err
	}
	rbSteps := p.RollbackPlan.RollbackSteps
	verify := p.RollbackPlan.Verify // the tester re-runs them after rollback.done
	reason := rr.GetReason()
	if !v.DeployStarted() {
		rbSteps, verify = nil, nil
		reason += " (nothing was deployed: no rollback step runs)"
	} else if p.NothingUndoneOnFailure() {
		return s.failNothingUndone(ctx, ev, rr, p)
	}
	started := eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{
		Reason: reason, RequestedBy: rr.GetRequestedBy(), Steps: int32(len(rbSteps)), Verify: verify,
	}}), ev)
	if _, err := s.bus.PublishOnce(ctx, started); err != nil {
		if !errors.Is(err, eventbus.ErrAlreadyPublished) {
			return err
		}
		if v, err = s.history(ctx, run); err != nil {
			return err
		}
		if v.RollbackStart.GetCausationId() != ev.Id {
			log.Info("rollback already under way for another request", "requested_by", rr.GetRequestedBy())
			return nil
		}
		log.Info("resuming rollback after a restart")
	}
	if err := s.stopDeploy(ctx, run); err != nil {
		return err
	}
	if v, err = s.awaitDeployOutcome(ctx, ev, log); err != nil {
		return err
	}
	if v.RollbackEnd != nil {
		return nil
	}
	t0 := time.Now()
	var done int32
	if rs := v.RollbackStart; rs != nil && rs.GetRollbackStarted().GetSteps() == 0 {
		rbSteps = nil // the rollback was recorded as one of a run that never deployed
	}
	failure := s.runList(ctx, s.executor(p, cr, v), run, cr, "rollback", "rollback", rbSteps, v, &done)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fin := &runbookv1.DeployFinished{StepsSucceeded: done, DurationMs: time.Since(t0).Milliseconds()}
	var out *runbookv1.Event
	if failure != nil {
		fin.Error, fin.FailedStep = failure.err.Error(), failure.step
		out = eventbus.New(run, &runbookv1.Event_RollbackFailed{RollbackFailed: fin})
	} else {
		out = eventbus.New(run, &runbookv1.Event_RollbackDone{RollbackDone: fin})
	}
	if _, err := s.bus.Publish(ctx, eventbus.CausedBy(out, ev)); err != nil {
		return err
	}
	if failure != nil {
		s.rollbackFailed.Inc()
		log.Error("ROLLBACK FAILED: production is in an unknown state", "step", failure.step, "err", failure.err)
	} else {
		log.Info("rolled back", "steps", done)
	}
	return nil
}

// stopDeploy stops a deploy of run that is still running here, and waits
// for it to end.
func (s *Service) stopDeploy(ctx context.Context, run string) error {
	s.mu.Lock()
	a := s.active[run]
	s.mu.Unlock()
	if a == nil {
		return nil
	}
	a.cancel(errRollbackRequested)
	select {
	case <-a.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stopOnRollbackElsewhere follows the run's rollback.started and
// run.failed while its deploy runs here: another replica may have taken
// the rollback request (the durable consumer gives each message to one
// replica). Either event cancels the deploy (errRollbackRequested), which
// kills the running step's process group; the deploy then records its
// outcome, which that replica's rollback waits for (awaitDeployOutcome).
// It ends with ctx (the deploy's own context).
func (s *Service) stopOnRollbackElsewhere(ctx context.Context, run string, cancel context.CancelCauseFunc, log *slog.Logger) {
	filters := []string{eventbus.Subject(run, "rollback.started"), eventbus.Subject(run, "run.failed")}
	err := s.bus.Follow(ctx, filters, 0, func(e eventbus.Envelope) error {
		log.Warn("the run's rollback was decided elsewhere: stopping its deploy here", "event", e.Event.GetType(), "source", e.Event.GetSource())
		cancel(errRollbackRequested)
		return eventbus.StopFollow()
	})
	if err != nil && ctx.Err() == nil {
		log.Warn("watching for a rollback decided elsewhere failed: a rollback taken by another replica waits for this deploy's end", "err", err)
	}
}

// awaitDeployOutcome waits until the run's deploy, if it started, has its
// outcome (deploy.done or deploy.failed) in the stream, and returns the
// run's journal then: a rollback's first step never runs while a deploy
// step may still run here or in another replica (which stops it as soon
// as it sees rollback.started: stopOnRollbackElsewhere). When no outcome
// comes within Options.DeployOutcomeWait, no live deployer runs that
// deploy (a live one stops within a second): its deployer died, and its
// step's processes with it (the parent-death signal). The rollback then
// ends the deploy's journal itself ("interrupted; rolling back"), as the
// redelivered deploy would; the redelivery finds it ended.
func (s *Service) awaitDeployOutcome(ctx context.Context, ev *runbookv1.Event, log *slog.Logger) (*runView, error) {
	run := ev.RunId
	t0 := time.Now()
	for {
		v, err := s.history(ctx, run)
		if err != nil {
			return nil, err
		}
		if !v.DeployStarted() || v.DeployFinished() {
			return v, nil
		}
		if time.Since(t0) >= s.o.DeployOutcomeWait {
			log.Warn("no deployer ended this deploy: ending its journal before the rollback's first step", "waited", time.Since(t0).Round(time.Millisecond).String())
			if err := s.endInterrupted(ctx, ev, v); err != nil {
				return nil, err
			}
			return s.history(ctx, run)
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
}

// failNothingUndone ends a run whose rollback was asked for after its
// deploy started when the plan has no executable rollback step
// (plan.NothingUndoneOnFailure): instead of a rollback that runs nothing
// and reads ROLLED_BACK, run.failed (FAILED) says that nothing was undone,
// why the rollback was asked for, and the plan's described steps as the
// operator's to-do. Once per run, whoever asked; a deploy still running
// here is stopped.
func (s *Service) failNothingUndone(ctx context.Context, ev *runbookv1.Event, rr *runbookv1.RollbackRequested, p *plan.Plan) error {
	run := ev.RunId
	log := s.log.With("run_id", run)
	reason := plan.NothingUndoneReason(rr.GetReason(), p.RollbackPlan.DescribedSteps())
	out := eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_RunFailed{RunFailed: &runbookv1.RunEnded{Reason: reason}}), ev)
	if _, err := s.bus.PublishOnce(ctx, out); err != nil {
		if !errors.Is(err, eventbus.ErrAlreadyPublished) {
			return err
		}
		log.Info("run already failed with nothing to undo", "requested_by", rr.GetRequestedBy())
	} else {
		log.Error("NOTHING UNDONE: the plan has no executable rollback step; manual action needed",
			"event", "run.failed", "requested_by", rr.GetRequestedBy(), "reason", rr.GetReason(), "manual_steps", len(p.RollbackPlan.DescribedSteps()))
	}
	return s.stopDeploy(ctx, run)
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
