// Package tester is runbook's TEST phase. On deploy.done it runs the plan's
// smoke tests one after another, then its load test (a closed model of
// virtual users), publishes each suite's result, and ends the phase with
// test.passed or test.failed — asking for a rollback first when a test failed
// and the plan does not say otherwise.
//
// The judging is pure (packages expect and loadstat); sending requests is
// package httprun; this file translates between events and those packages.
package tester

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/runplan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/tester/httprun"
	"github.com/kis-core/runbook/services/tester/loadstat"
)

// Durable is the tester's consumer name. Never rename it: a new name would
// re-consume the whole stream.
const Durable = "tester"

// DefaultConcurrency bounds the runs tested at once: load tests of several
// runs on one machine would distort each other's latencies.
const DefaultConcurrency = 4

// Options of the tester.
type Options struct {
	Consumer eventbus.ConsumerOptions
	// LookupEnv reads the environment variables named by headers_env
	// (default os.LookupEnv). Values are sent as headers and never written
	// into events or logs.
	LookupEnv func(name string) (string, bool)
	// SmokeClient sends smoke-test requests (default: a client of its own).
	SmokeClient *http.Client
	// LoadRequestTimeout bounds one load-test request (default 60s, k6's).
	LoadRequestTimeout time.Duration
	// GracefulStop lets load requests in flight at the end finish (default 30s).
	GracefulStop time.Duration
	// ProgressEvery is the test.load.progress period (default and minimum 1s).
	ProgressEvery time.Duration
	// MaxBody bounds the response body read for JSON checks (default 10 MiB).
	MaxBody int64
}

func (o *Options) setDefaults() {
	o.Consumer.Durable = Durable
	if o.Consumer.Concurrency <= 0 {
		o.Consumer.Concurrency = DefaultConcurrency
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.SmokeClient == nil {
		o.SmokeClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if o.MaxBody <= 0 {
		o.MaxBody = httprun.DefaultMaxBody
	}
}

// Service is the tester.
type Service struct {
	bus     *eventbus.Bus
	opts    Options
	log     *slog.Logger
	metrics *eventbus.Metrics
	m       *metrics
}

// New builds the tester; reg receives its metrics.
func New(bus *eventbus.Bus, o Options, log *slog.Logger, m *eventbus.Metrics, reg prometheus.Registerer) *Service {
	o.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{bus: bus, opts: o, log: log, metrics: m, m: newMetrics(reg)}
}

// Run consumes deploy.done until ctx ends and in-flight tests have drained.
func (s *Service) Run(ctx context.Context) error {
	r := eventbus.NewRouter(s.bus, s.opts.Consumer, s.log, s.metrics)
	eventbus.On(r, "deploy.done", s.onDeployDone)
	return r.Run(ctx)
}

// errRollbackStarted aborts a load test: the release under test is going away.
var errRollbackStarted = errors.New("rollback started")

// history indexes a run's events by type (the last of each).
type history map[string]*runbookv1.Event

func (h history) first(types ...string) *runbookv1.Event {
	for _, t := range types {
		if ev := h[t]; ev != nil {
			return ev
		}
	}
	return nil
}

func (s *Service) history(ctx context.Context, runID string) (history, error) {
	envs, err := s.bus.RunHistory(ctx, runID)
	if err != nil {
		return nil, err
	}
	h := history{}
	for _, e := range envs {
		h[e.Event.GetType()] = e.Event
	}
	return h, nil
}

func (s *Service) onDeployDone(ctx context.Context, ev *runbookv1.Event, _ *runbookv1.DeployFinished) error {
	run := ev.GetRunId()
	log := s.log.With("run_id", run, "event", ev.GetType())
	h, err := s.history(ctx, run)
	if err != nil {
		return err
	}
	if done := h.first("test.passed", "test.failed"); done != nil {
		log.Info("run already tested; nothing to do", "outcome", done.GetType())
		return nil
	}
	if h["rollback.started"] != nil {
		log.Info("rollback already started; not testing a release that is going away")
		return nil
	}
	pl, _, err := runplan.Load(ctx, s.bus, run)
	if err != nil {
		if errors.Is(err, runplan.ErrNoRun) {
			return eventbus.Permanent(err)
		}
		return fmt.Errorf("load plan of run %s: %w", run, err)
	}
	t := pl.Test
	if len(t.Smoke) == 0 && t.Load == nil {
		log.Info("no tests in the plan")
		return s.finish(ctx, ev, t, verdict{pass: true, reason: "no tests in the plan"}, log)
	}

	if h["test.started"] == nil {
		started := &runbookv1.TestStarted{SmokeTests: int32(len(t.Smoke)), LoadTest: t.Load != nil}
		if err := s.publishOnce(ctx, eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_TestStarted{TestStarted: started}), ev)); err != nil {
			return err
		}
	}

	var v verdict
	if len(t.Smoke) > 0 {
		suite, err := s.smoke(ctx, ev, t.Smoke, h, log)
		if err != nil {
			return err
		}
		v.addSmoke(suite)
	}
	if t.Load != nil {
		if v.failed > 0 {
			v.failures = append(v.failures, "load test skipped")
			log.Info("load test skipped: smoke tests failed")
		} else {
			res, pass, err := s.load(ctx, ev, t.Load, h, log)
			if errors.Is(err, errRollbackStarted) {
				log.Info("rollback started during the load test; test phase abandoned")
				return nil
			}
			if err != nil {
				return err
			}
			v.addLoad(res, pass)
		}
	}
	v.pass = v.failed == 0
	if v.pass {
		v.reason = fmt.Sprintf("%d of %d tests passed", v.passed, v.passed)
	} else {
		v.reason = strings.Join(v.failures, "; ")
	}
	return s.finish(ctx, ev, t, v, log)
}

// smoke runs the smoke suite, or returns the one already recorded.
func (s *Service) smoke(ctx context.Context, cause *runbookv1.Event, tests []plan.SmokeTest, h history, log *slog.Logger) (*runbookv1.TestSuiteResult, error) {
	if prev := h.first("test.smoke.failed", "test.smoke.passed"); prev != nil {
		log.Info("smoke suite already recorded; not re-running it", "outcome", prev.GetType())
		if r := prev.GetTestSmokeFailed(); r != nil {
			return r, nil
		}
		return prev.GetTestSmokePassed(), nil
	}
	runner := &httprun.Smoke{Client: s.opts.SmokeClient, Env: s.opts.LookupEnv, MaxBody: s.opts.MaxBody}
	suite := &runbookv1.TestSuiteResult{}
	for _, st := range tests {
		c, err := runner.Run(ctx, st)
		if err != nil {
			return nil, err
		}
		tc := &runbookv1.TestCase{Name: c.Name, Type: c.Type, Status: status(c.Pass), DurationMs: c.Duration.Milliseconds(), Details: c.Details, Error: c.Error}
		suite.Tests = append(suite.Tests, tc)
		if c.Pass {
			suite.Passed++
		} else {
			suite.Failed++
		}
		s.m.tests.WithLabelValues(tc.Type, tc.Status).Inc()
		log.Info("smoke test", "step", tc.Name, "status", tc.Status, "duration_ms", tc.DurationMs, "error", tc.Error)
	}
	var ev *runbookv1.Event
	if suite.Failed > 0 {
		ev = eventbus.New(cause.GetRunId(), &runbookv1.Event_TestSmokeFailed{TestSmokeFailed: suite})
	} else {
		ev = eventbus.New(cause.GetRunId(), &runbookv1.Event_TestSmokePassed{TestSmokePassed: suite})
	}
	if err := s.publishOnce(ctx, eventbus.CausedBy(ev, cause)); err != nil {
		return nil, err
	}
	return suite, nil
}

// load runs the load test, or returns the result already recorded. It returns
// errRollbackStarted when a rollback began meanwhile.
func (s *Service) load(ctx context.Context, cause *runbookv1.Event, lt *plan.LoadTest, h history, log *slog.Logger) (*runbookv1.LoadResult, bool, error) {
	run := cause.GetRunId()
	if prev := h.first("test.load.failed", "test.load.passed"); prev != nil {
		log.Info("load test already recorded; not re-running it", "outcome", prev.GetType())
		if r := prev.GetTestLoadFailed(); r != nil {
			return r, false, nil
		}
		return prev.GetTestLoadPassed(), true, nil
	}
	if rb, err := s.bus.LastEvent(ctx, run, "rollback.started"); err != nil {
		return nil, false, err
	} else if rb != nil {
		return nil, false, errRollbackStarted
	}

	eg := lt.EffectiveGates() // the plan's defaults; error_rate: 0 means no error allowed
	gates := loadstat.Gates{P95MS: eg.P95MS, ErrorRate: eg.ErrorRate}
	cfg, cerr := loadConfig(lt, s.opts.LookupEnv)
	res := &runbookv1.LoadResult{Vus: int32(cfg.VUs), DurationMs: cfg.Duration.Milliseconds(), GateP95Ms: gates.P95MS, GateErrorRate: gates.ErrorRate}
	pass := false
	if cerr != nil {
		res.Reason = cerr.Error()
	} else {
		cfg.RequestTimeout, cfg.GracefulStop, cfg.ProgressEvery = s.opts.LoadRequestTimeout, s.opts.GracefulStop, s.opts.ProgressEvery
		log.Info("load test started", "vus", cfg.VUs, "duration", cfg.Duration.String(), "requests", len(cfg.Requests))
		rep, err := s.runLoad(ctx, cause, cfg, log)
		if err != nil {
			return nil, false, err
		}
		v := loadstat.Judge(rep.Snapshot, gates)
		pass = v.Pass
		res.DurationMs = rep.Elapsed.Milliseconds()
		res.Requests, res.Errors, res.ErrorRate = rep.Requests, rep.Errors, rep.ErrorRate()
		res.AvgMs, res.P95Ms, res.MaxMs, res.Rps = round2(rep.AvgMS), round2(rep.P95MS), round2(rep.MaxMS), round2(rep.RPS)
		res.Reason = v.Reason
	}
	s.m.tests.WithLabelValues("load", status(pass)).Inc()
	log.Info("load test", "status", status(pass), "requests", res.Requests, "errors", res.Errors, "p95_ms", res.P95Ms, "reason", res.Reason)
	var ev *runbookv1.Event
	if pass {
		ev = eventbus.New(run, &runbookv1.Event_TestLoadPassed{TestLoadPassed: res})
	} else {
		ev = eventbus.New(run, &runbookv1.Event_TestLoadFailed{TestLoadFailed: res})
	}
	if err := s.publishOnce(ctx, eventbus.CausedBy(ev, cause)); err != nil {
		return nil, false, err
	}
	return res, pass, nil
}

// runLoad runs one load test, publishing its progress, and aborts it with
// errRollbackStarted when the run's rollback begins.
func (s *Service) runLoad(ctx context.Context, cause *runbookv1.Event, cfg httprun.LoadConfig, log *slog.Logger) (httprun.LoadReport, error) {
	run := cause.GetRunId()
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	obs := httprun.LoadObserver{
		OnRequest: func(_ *httprun.Prepared, d time.Duration, failed bool) {
			outcome := "ok"
			if failed {
				outcome = "error"
			}
			s.m.loadRequests.WithLabelValues(outcome).Inc()
			s.m.loadLatency.Observe(d.Seconds())
		},
		OnProgress: func(p httprun.Progress) {
			if rb, err := s.bus.LastEvent(lctx, run, "rollback.started"); err == nil && rb != nil {
				cancel(errRollbackStarted)
				return
			}
			pr := &runbookv1.LoadProgress{ElapsedMs: p.Elapsed.Milliseconds(), Requests: p.Requests, Errors: p.Errors, P95Ms: round2(p.P95MS)}
			ev := eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_TestLoadProgress{TestLoadProgress: pr}, p.Second), cause)
			if _, err := s.bus.Publish(lctx, ev); err != nil && lctx.Err() == nil {
				log.Warn("load progress not published", "err", err)
			}
		},
	}
	return httprun.RunLoad(lctx, cfg, loadstat.NewRecorder(), obs)
}

// loadConfig turns the plan's load test into a runnable one, with the seed's
// defaults (50 VUs, 5 minutes, 1s think time). An explicit think_time: 0s
// means none (plan.Duration.Or).
func loadConfig(lt *plan.LoadTest, env httprun.LookupEnv) (httprun.LoadConfig, error) {
	cfg := httprun.LoadConfig{
		VUs:       lt.VUs,
		Duration:  lt.Duration.Or(httprun.DefaultLoadDuration),
		ThinkTime: lt.ThinkTime.Or(httprun.DefaultThinkTime),
	}
	if cfg.VUs <= 0 {
		cfg.VUs = httprun.DefaultVUs
	}
	if len(lt.Requests) == 0 {
		return cfg, errors.New("load test has no requests")
	}
	for i, r := range lt.Requests {
		p, err := httprun.Prepare(r, env)
		if err != nil {
			return cfg, fmt.Errorf("load request %d: %w", i+1, err)
		}
		cfg.Requests = append(cfg.Requests, p)
	}
	return cfg, nil
}

// verdict is the outcome of the whole test phase as it builds up.
type verdict struct {
	pass           bool
	passed, failed int32
	reason         string
	failures       []string
	// The load gate broken, for the rollback request.
	metric           string
	value, threshold float64
}

func (v *verdict) addSmoke(s *runbookv1.TestSuiteResult) {
	v.passed += s.GetPassed()
	v.failed += s.GetFailed()
	var names []string
	for _, c := range s.GetTests() {
		if c.GetStatus() != "PASS" {
			names = append(names, fmt.Sprintf("%s (%s)", c.GetName(), c.GetError()))
		}
	}
	if len(names) > 0 {
		v.failures = append(v.failures, fmt.Sprintf("%d of %d smoke tests failed: %s", len(names), len(s.GetTests()), strings.Join(names, ", ")))
	}
}

func (v *verdict) addLoad(r *runbookv1.LoadResult, pass bool) {
	if pass {
		v.passed++
		return
	}
	v.failed++
	v.failures = append(v.failures, "load test failed: "+r.GetReason())
	if r.GetRequests() > 0 {
		j := loadstat.Judge(loadstat.Snapshot{Requests: r.GetRequests(), Errors: r.GetErrors(), P95MS: r.GetP95Ms()},
			loadstat.Gates{P95MS: r.GetGateP95Ms(), ErrorRate: r.GetGateErrorRate()})
		v.metric, v.value, v.threshold = j.Metric, j.Value, j.Threshold
	}
}

// finish asks for a rollback when the tests failed (unless the plan says
// rollback_on_failure: false), then publishes test.passed or test.failed.
func (s *Service) finish(ctx context.Context, cause *runbookv1.Event, t plan.Test, v verdict, log *slog.Logger) error {
	run := cause.GetRunId()
	out := &runbookv1.TestOutcome{Passed: v.passed, Failed: v.failed, Reason: v.reason}
	if !v.pass && (t.RollbackOnFailure == nil || *t.RollbackOnFailure) {
		rr := &runbookv1.RollbackRequested{Reason: v.reason, RequestedBy: "tester", Metric: v.metric, Value: v.value, Threshold: v.threshold}
		ev := eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_RollbackRequested{RollbackRequested: rr}, "tester"), cause)
		if _, err := s.bus.Publish(ctx, ev); err != nil {
			return err
		}
		out.RollbackRequested = true
		log.Warn("rollback requested", "reason", v.reason)
	}
	var ev *runbookv1.Event
	if v.pass {
		ev = eventbus.New(run, &runbookv1.Event_TestPassed{TestPassed: out})
	} else {
		ev = eventbus.New(run, &runbookv1.Event_TestFailed{TestFailed: out})
	}
	if err := s.publishOnce(ctx, eventbus.CausedBy(ev, cause)); err != nil {
		return err
	}
	log.Info("test phase finished", "outcome", ev.GetType(), "passed", v.passed, "failed", v.failed, "reason", v.reason)
	return nil
}

// publishOnce publishes an event that exists at most once per run; finding
// it already there (a redelivery) is success.
func (s *Service) publishOnce(ctx context.Context, ev *runbookv1.Event) error {
	if _, err := s.bus.PublishOnce(ctx, ev); err != nil && !errors.Is(err, eventbus.ErrAlreadyPublished) {
		return err
	}
	return nil
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

func status(pass bool) string {
	if pass {
		return "PASS"
	}
	return "FAIL"
}
