// Package preflight is the PRE-FLIGHT and PLAN phases: it validates the plan
// of every change.requested (an invalid plan becomes change.rejected with
// every error), runs the plan's checks concurrently, scores the risks with
// the seed's matrix (plan.assessed), backs up when the checks passed
// (backup.done, package backup) and ends in preflight.passed or
// preflight.failed.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/risk"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/backup"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/preflight/checks"
)

// Durable is the consumer's name. Never rename it.
const Durable = "preflight"

// Options of the preflight service.
type Options struct {
	Consumer eventbus.ConsumerOptions
	// Env looks up environment variables for env checks and *_env fields
	// (default os.LookupEnv).
	Env checks.Env
	// CheckTimeout applies to checks without their own (default 5s).
	CheckTimeout time.Duration
	// Environment is backup_metadata.json's environment: the seed's
	// ${ENVIRONMENT:-production} (default: Env("ENVIRONMENT"), else
	// "production").
	Environment string
	// Keyring holds the identities allowed to request changes: a change
	// request must be signed by one (nil: unsigned requests are run, as
	// with --insecure-no-auth).
	Keyring interface {
		Keyring() (*trust.Keyring, error)
	}
}

// Service is the preflight service.
type Service struct {
	bus     *eventbus.Bus
	o       Options
	log     *slog.Logger
	m       *eventbus.Metrics
	runner  *checks.Runner
	backup  *backup.Runner
	results *prometheus.CounterVec
}

// New makes the service.
func New(bus *eventbus.Bus, o Options, log *slog.Logger, m *eventbus.Metrics, reg prometheus.Registerer) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Env == nil {
		o.Env = os.LookupEnv
	}
	if o.Environment == "" {
		o.Environment, _ = o.Env("ENVIRONMENT")
	}
	if o.Environment == "" {
		o.Environment = backup.DefaultEnvironment
	}
	o.Consumer.Durable = Durable
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Service{
		bus: bus, o: o, log: log, m: m,
		runner: &checks.Runner{HTTP: &http.Client{}, Env: o.Env, DefaultTimeout: o.CheckTimeout},
		backup: &backup.Runner{},
		results: eventbus.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runbook_preflight_checks_total",
			Help: "Pre-flight checks run, by kind and status.",
		}, []string{"kind", "status"})),
	}
}

// Run consumes change.requested until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	r := eventbus.NewRouter(s.bus, s.o.Consumer, s.log, s.m)
	eventbus.On(r, "change.requested", s.onChangeRequested)
	return r.Run(ctx)
}

// checkSignature verifies a change request against the keyring: signed by
// a requester (or admin) over this run and this exact plan text. The first
// result is the refusal, the second a failure to read the keyring.
func (s *Service) checkSignature(ev *runbookv1.Event, cr *runbookv1.ChangeRequested) (refusal, err error) {
	if s.o.Keyring == nil {
		return nil, nil
	}
	kr, err := s.o.Keyring.Keyring()
	if err != nil {
		return nil, fmt.Errorf("read the keyring: %w", err)
	}
	sha := plan.Hash([]byte(cr.GetPlanYaml()))
	if cr.GetPlanSha256() != "" && !strings.EqualFold(cr.GetPlanSha256(), sha) {
		return fmt.Errorf("plan_sha256 %s is not the sha256 of plan_yaml (%s): the plan was altered", cr.GetPlanSha256(), sha), nil
	}
	if _, err := trust.Verify(kr, ev, sha, ""); err != nil {
		return fmt.Errorf("change request refused: %w", err), nil
	}
	return nil, nil
}

func (s *Service) onChangeRequested(ctx context.Context, ev *runbookv1.Event, cr *runbookv1.ChangeRequested) error {
	run := ev.RunId
	log := s.log.With("run_id", run)
	for _, done := range []string{"preflight.passed", "preflight.failed", "change.rejected"} {
		e, err := s.bus.LastEvent(ctx, run, done)
		if err != nil {
			return err
		}
		if e != nil {
			log.Info("already decided; nothing to do", "event", done)
			return nil
		}
	}

	p, issues := plan.FromChangeRequest(cr)
	if serr, err := s.checkSignature(ev, cr); err != nil {
		return err
	} else if serr != nil {
		p, issues = nil, []plan.Issue{{Path: "signature", Message: serr.Error()}}
	}
	if p == nil {
		rej := &runbookv1.ChangeRejected{}
		for _, i := range issues {
			pe := &runbookv1.PlanError{Path: i.Path, Line: int32(i.Line), Column: int32(i.Column), Value: i.Value, Message: i.Message}
			if i.Warning {
				rej.Warnings = append(rej.Warnings, pe)
			} else {
				rej.Errors = append(rej.Errors, pe)
			}
		}
		out := eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_ChangeRejected{ChangeRejected: rej}), ev)
		if _, err := s.bus.PublishOnce(ctx, out); err != nil && !errors.Is(err, eventbus.ErrAlreadyPublished) {
			return err
		}
		log.Warn("plan rejected", "errors", len(rej.Errors))
		return nil
	}

	nChecks := len(p.Preflight.Checks)
	if p.Reverts != nil {
		nChecks++ // revertCheck
	}
	started := eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_PreflightStarted{PreflightStarted: &runbookv1.PreflightStarted{Checks: int32(nChecks)}}), ev)
	if _, err := s.bus.Publish(ctx, started); err != nil {
		return err
	}

	assessment := risk.Assess(p.RisksAndMitigations, p.Approval)
	if _, err := s.bus.Publish(ctx, eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_PlanAssessed{PlanAssessed: assessedEvent(assessment)}), ev)); err != nil {
		return err
	}

	// No result shows the value of a variable the plan names, whichever
	// check or backup step read it.
	runner := s.runner.ForPlan(p)
	secrets := runner.SecretValues(p)
	results := runner.RunAll(ctx, p.Preflight.Checks, secrets...)
	var failed []string
	for _, r := range results {
		s.results.WithLabelValues(r.Kind, strings.TrimPrefix(r.Status.String(), "CHECK_STATUS_")).Inc()
		if r.Status == runbookv1.CheckStatus_CHECK_STATUS_FAIL {
			failed = append(failed, fmt.Sprintf("%s: %s", r.Name, r.Message))
		}
		log.Info("check", "step", r.Name, "kind", r.Kind, "status", r.Status.String(), "value", r.Value, "duration_ms", r.DurationMs)
	}
	// A revert run checks the run it reverts (its plan's reverts).
	var reverts *runbookv1.Event
	var revertsAfter uint64
	if p.Reverts != nil {
		rc, out, after, err := s.revertCheck(ctx, ev, p)
		if err != nil {
			return err
		}
		results = append(results, rc)
		if rc.Status == runbookv1.CheckStatus_CHECK_STATUS_FAIL {
			failed = append(failed, fmt.Sprintf("%s: %s", rc.Name, rc.Message))
		}
		reverts, revertsAfter = out, after
		log.Info("check", "step", rc.Name, "kind", rc.Kind, "status", rc.Status.String(), "value", rc.Value)
	}
	res := &runbookv1.PreflightResult{Checks: results}
	// The backup is the last part of pre-flight, only when the checks
	// passed (the seed backs up once the system is known to be fit).
	var backupErr *backup.StepError
	if len(failed) == 0 && p.Preflight.Backup != nil {
		steps, err := s.runBackup(ctx, ev, cr, p)
		if err != nil && !errors.As(err, &backupErr) {
			return err // shutting down or the bus failed: redelivery retries
		}
		for _, r := range steps {
			checks.Scrub(r, secrets)
		}
		res.Checks = append(res.Checks, steps...)
	}
	var out *runbookv1.Event
	if len(failed) > 0 {
		res.Reason = fmt.Sprintf("%d blocking check(s) failed: %s", len(failed), strings.Join(failed, "; "))
		out = eventbus.New(run, &runbookv1.Event_PreflightFailed{PreflightFailed: res})
	} else if backupErr != nil {
		res.Reason = checks.ScrubText(backupErr.Error(), secrets)
		out = eventbus.New(run, &runbookv1.Event_PreflightFailed{PreflightFailed: res})
	} else {
		out = eventbus.New(run, &runbookv1.Event_PreflightPassed{PreflightPassed: res})
		if reverts != nil {
			// The reverted run learns who reverts it before the revert
			// can deploy (its report and `runbook revert` read it there).
			// Only over the revert.requested the check saw: two reverts
			// of one run checked at once cannot both pass; the one that
			// comes second is checked again and refused.
			if _, err := s.bus.PublishAfter(ctx, reverts, revertsAfter); errors.Is(err, eventbus.ErrNotLatest) {
				return eventbus.Retry(fmt.Errorf("another revert of run %s was requested while this one was checked: checking again", p.Reverts.Run), 200*time.Millisecond)
			} else if err != nil {
				return fmt.Errorf("record the revert on run %s: %w", p.Reverts.Run, err)
			}
		}
	}
	if _, err := s.bus.PublishOnce(ctx, eventbus.CausedBy(out, ev)); err != nil && !errors.Is(err, eventbus.ErrAlreadyPublished) {
		return err
	}
	log.Info("pre-flight decided", "event", out.Type, "checks", len(results), "failed", len(failed))
	return nil
}

// revertCheck is the check of a revert run (its plan's reverts.run, see
// plan.Revert): the reverted run ended SUCCESS and no other revert of it
// deployed or is under way (runstate.RevertRefusal: the sentences `runbook
// revert` says too), and its backup holds every file the restore steps
// restore (validate cannot know it). With the check passed, out is the
// revert.requested to publish on the reverted run, after (the stream
// sequence of) the latest one the check saw.
func (s *Service) revertCheck(ctx context.Context, ev *runbookv1.Event, p *plan.Plan) (res *runbookv1.CheckResult, out *runbookv1.Event, after uint64, err error) {
	orig := p.Reverts.Run
	t0 := time.Now()
	res = &runbookv1.CheckResult{Name: "reverts run " + orig, Kind: "reverts", Blocking: true, Status: runbookv1.CheckStatus_CHECK_STATUS_FAIL}
	defer func() { res.DurationMs = time.Since(t0).Milliseconds() }()
	hist, err := s.bus.RunHistory(ctx, orig)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("read the reverted run %s: %w", orig, err)
	}
	st := runstate.New(orig)
	var backup *runbookv1.BackupDone
	for _, e := range hist {
		st.ApplyAt(e.Seq, e.Event)
		if e.Event.GetRevertRequested() != nil {
			after = e.Seq
		}
		if bd := e.Event.GetBackupDone(); bd != nil {
			backup = bd // the run's one directory, with every file so far
		}
	}
	var others []*runstate.State
	for _, by := range st.RevertedBy() {
		if by == ev.GetRunId() {
			continue // this run's own, from an attempt cut short
		}
		oh, err := s.bus.RunHistory(ctx, by)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("read run %s, which reverts %s: %w", by, orig, err)
		}
		o := runstate.New(by)
		for _, e := range oh {
			o.ApplyAt(e.Seq, e.Event)
		}
		others = append(others, o)
	}
	if refusal := st.RevertRefusal(others); refusal != nil {
		res.Message = refusal.Error()
		return res, nil, 0, nil
	}
	var missing []string
	for _, step := range p.Deploy.Steps {
		if r := step.Restore; r != nil && (backup == nil || !slices.Contains(backup.GetFiles(), r.File)) {
			missing = append(missing, r.File)
		}
	}
	switch {
	case len(missing) > 0 && backup == nil:
		res.Message = fmt.Sprintf("run %s has no backup (no backup.done): the restore of %s would have nothing to restore from", orig, strings.Join(missing, ", "))
		return res, nil, 0, nil
	case len(missing) > 0:
		res.Message = fmt.Sprintf("run %s's backup %s does not hold %s: it holds %s", orig, backup.GetDir(), strings.Join(missing, ", "), strings.Join(backup.GetFiles(), ", "))
		return res, nil, 0, nil
	}
	res.Status = runbookv1.CheckStatus_CHECK_STATUS_PASS
	if backup != nil {
		res.Value = fmt.Sprintf("%d file(s)", len(backup.GetFiles()))
		res.Message = fmt.Sprintf("run %s ended SUCCESS; restore steps read its backup %s", orig, backup.GetDir())
	} else {
		res.Message = fmt.Sprintf("run %s ended SUCCESS; it has no backup (no restore step needs one)", orig)
	}
	out = eventbus.CausedBy(eventbus.New(orig, &runbookv1.Event_RevertRequested{RevertRequested: &runbookv1.RevertRequested{
		ByRun: ev.GetRunId(), ChangeId: p.ChangeRequest.ID, Reason: p.Reverts.Reason, RequestedBy: ev.GetActor(),
	}}, ev.GetRunId()), ev)
	return res, out, after, nil
}

// runBackup backs the run up once: when backup.done is already in the run's
// history (a redelivery after a crash), it is not done again. The result
// has one check of kind "backup" per step; the error is a
// *backup.StepError when a step failed.
func (s *Service) runBackup(ctx context.Context, ev *runbookv1.Event, cr *runbookv1.ChangeRequested, p *plan.Plan) ([]*runbookv1.CheckResult, error) {
	run := ev.RunId
	log := s.log.With("run_id", run)
	prev, err := s.bus.LastEvent(ctx, run, "backup.done")
	if err != nil {
		return nil, err
	}
	if prev != nil {
		bd := prev.Event.GetBackupDone()
		log.Info("backup already done; not backing up again", "event", "backup.done", "dir", bd.GetDir())
		return []*runbookv1.CheckResult{{
			Name: "backup", Kind: "backup", Status: runbookv1.CheckStatus_CHECK_STATUS_PASS, Blocking: true,
			Value: fmt.Sprintf("%d file(s)", len(bd.GetFiles())), Message: "backed up before a restart to " + bd.GetDir(),
		}}, nil
	}
	changeID := p.ChangeRequest.ID
	if changeID == "" {
		changeID = cr.GetChangeId()
	}
	spec := *p.Preflight.Backup
	spec.Dir = p.BackupDir() // the run's one backup directory, whichever of the plan's backups sets it
	res, berr := s.backup.Run(ctx, spec, backup.Run{
		RunID: run, ChangeID: changeID, Operator: ev.GetActor(), Environment: s.o.Environment,
		Secrets: s.planSecrets(p),
	})
	var out []*runbookv1.CheckResult
	for _, st := range res.Steps {
		status := runbookv1.CheckStatus_CHECK_STATUS_PASS
		switch st.Status {
		case backup.Warn:
			status = runbookv1.CheckStatus_CHECK_STATUS_WARN
		case backup.Fail:
			status = runbookv1.CheckStatus_CHECK_STATUS_FAIL
		}
		s.results.WithLabelValues("backup", st.Status.String()).Inc()
		out = append(out, &runbookv1.CheckResult{
			Name: "backup: " + st.Name, Kind: "backup", Status: status, Blocking: true,
			Value: fmt.Sprintf("%d file(s)", len(st.Files)), Message: st.Message, DurationMs: st.Duration.Milliseconds(),
		})
		log.Info("backup step", "step", st.Name, "kind", st.Kind, "status", st.Status.String(), "files", len(st.Files), "warnings", len(st.Warnings), "duration_ms", st.Duration.Milliseconds())
	}
	if berr != nil {
		var se *backup.StepError
		if errors.As(berr, &se) && se.Index < 0 {
			out = append(out, &runbookv1.CheckResult{Name: "backup: " + se.Name, Kind: "backup", Status: runbookv1.CheckStatus_CHECK_STATUS_FAIL, Blocking: true, Message: se.Err.Error()})
		}
		log.Error("BACKUP FAILED", "dir", res.Dir, "err", berr)
		return out, berr
	}
	bd := &runbookv1.BackupDone{Dir: res.Dir, Files: res.Metadata.Files, MetadataPath: res.MetadataPath}
	for _, d := range res.Metadata.FileDetails {
		bd.FileDetails = append(bd.FileDetails, &runbookv1.BackupFile{Name: d.Name, Size: d.Size, Sha256: d.SHA256})
	}
	done := eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_BackupDone{BackupDone: bd}), ev)
	if _, err := s.bus.PublishOnce(ctx, done); err != nil {
		if !errors.Is(err, eventbus.ErrAlreadyPublished) {
			return out, err
		}
		log.Warn("backup.done was already published by an earlier attempt; this directory is unused", "dir", res.Dir)
	}
	log.Info("backup done", "event", "backup.done", "dir", res.Dir, "files", len(bd.Files))
	return out, nil
}

// planSecrets are the values of the variables plan p names
// (plan.SecretEnv), by name: what no backup command may show.
func (s *Service) planSecrets(p *plan.Plan) map[string]string {
	out := map[string]string{}
	for _, n := range p.SecretEnv() {
		if v, ok := s.o.Env(n); ok && v != "" {
			out[n] = v
		}
	}
	return out
}

func assessedEvent(a risk.Assessment) *runbookv1.PlanAssessed {
	out := &runbookv1.PlanAssessed{
		Level:                     a.Level,
		MaxScore:                  int32(a.MaxScore),
		RequiresExecutiveApproval: a.RequiresExecutiveApproval,
		ApprovalsRequired:         a.ApprovalsRequired,
	}
	for _, r := range a.Risks {
		out.Risks = append(out.Risks, &runbookv1.Risk{
			Id: r.ID, Description: r.Description, Probability: r.Probability, Impact: r.Impact,
			ProbabilityScore: int32(r.ProbabilityScore), ImpactScore: int32(r.ImpactScore), Score: int32(r.Score),
			Level: r.Level, RequiresExecutiveApproval: r.RequiresExecutiveApproval, Mitigation: r.Mitigation,
			ScoringNote: r.ScoringNote,
		})
	}
	return out
}
