// Package preflight is the PRE-FLIGHT and PLAN phases: it validates the plan
// of every change.requested (an invalid plan becomes change.rejected with
// every error), runs the plan's checks concurrently, scores the risks with
// the seed's matrix (plan.assessed) and ends in preflight.passed or
// preflight.failed.
package preflight

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/risk"
	"github.com/kis-core/runbook/eventbus"
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
}

// Service is the preflight service.
type Service struct {
	bus     *eventbus.Bus
	o       Options
	log     *slog.Logger
	m       *eventbus.Metrics
	runner  *checks.Runner
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
	o.Consumer.Durable = Durable
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	return &Service{
		bus: bus, o: o, log: log.With("service", Durable), m: m,
		runner: &checks.Runner{HTTP: &http.Client{}, Env: o.Env, DefaultTimeout: o.CheckTimeout},
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

	p, issues := plan.Parse(cr.GetPlanSource(), []byte(cr.GetPlanYaml()))
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

	started := eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_PreflightStarted{PreflightStarted: &runbookv1.PreflightStarted{Checks: int32(len(p.Preflight.Checks))}}), ev)
	if _, err := s.bus.Publish(ctx, started); err != nil {
		return err
	}

	assessment := risk.Assess(p.RisksAndMitigations, p.Approval)
	if _, err := s.bus.Publish(ctx, eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_PlanAssessed{PlanAssessed: assessedEvent(assessment)}), ev)); err != nil {
		return err
	}

	results := s.runner.RunAll(ctx, p.Preflight.Checks)
	var failed []string
	for _, r := range results {
		s.results.WithLabelValues(r.Kind, strings.TrimPrefix(r.Status.String(), "CHECK_STATUS_")).Inc()
		if r.Status == runbookv1.CheckStatus_CHECK_STATUS_FAIL {
			failed = append(failed, fmt.Sprintf("%s: %s", r.Name, r.Message))
		}
		log.Info("check", "step", r.Name, "kind", r.Kind, "status", r.Status.String(), "value", r.Value, "duration_ms", r.DurationMs)
	}
	res := &runbookv1.PreflightResult{Checks: results}
	var out *runbookv1.Event
	if len(failed) > 0 {
		res.Reason = fmt.Sprintf("%d blocking check(s) failed: %s", len(failed), strings.Join(failed, "; "))
		out = eventbus.New(run, &runbookv1.Event_PreflightFailed{PreflightFailed: res})
	} else {
		out = eventbus.New(run, &runbookv1.Event_PreflightPassed{PreflightPassed: res})
	}
	if _, err := s.bus.PublishOnce(ctx, eventbus.CausedBy(out, ev)); err != nil && !errors.Is(err, eventbus.ErrAlreadyPublished) {
		return err
	}
	log.Info("pre-flight decided", "event", out.Type, "checks", len(results), "failed", len(failed))
	return nil
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
