// Package tester is runbook's TEST phase. On deploy.done it runs the plan's
// smoke tests one after another, then its load test (virtual users, ramped
// by stages, or a constant arrival rate), judges the load test against its
// gates and against the last passed run of the same change (a Mann-Whitney
// regression check), writes its k6-shaped summary, publishes each suite's
// result, and ends the phase with test.passed or test.failed — asking for a
// rollback first when a test failed and the plan does not say otherwise.
// When the run's rollback begins meanwhile (the monitor, an operator) it
// stops at once and ends the phase with a stopped test.failed carrying what
// was measured before the stop (stop.go). After a rollback whose plan names
// rollback_plan.verify suites it re-runs them against the restored release
// and publishes rollback.verified or rollback.verify.failed (verify.go).
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
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/runplan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/tester/httprun"
	"github.com/kis-core/runbook/services/tester/k6summary"
	"github.com/kis-core/runbook/services/tester/loadstat"
	"github.com/kis-core/runbook/services/tester/regress"
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
	// SummaryDir, when set, receives each load test's k6-shaped summary as
	// <dir>/<run>-k6-summary.json (the LoadResult event carries it anyway).
	SummaryDir string
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
	// verifying holds the runs whose rollback this tester is verifying.
	verifying sync.Map
}

// New builds the tester; reg receives its metrics.
func New(bus *eventbus.Bus, o Options, log *slog.Logger, m *eventbus.Metrics, reg prometheus.Registerer) *Service {
	o.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{bus: bus, opts: o, log: log, metrics: m, m: newMetrics(reg)}
}

// Run consumes deploy.done and rollback.done until ctx ends and in-flight
// tests have drained.
func (s *Service) Run(ctx context.Context) error {
	r := eventbus.NewRouter(s.bus, s.opts.Consumer, s.log, s.metrics)
	eventbus.On(r, "deploy.done", s.onDeployDone)
	eventbus.On(r, "rollback.done", s.onRollbackDone) // verify.go
	return r.Run(ctx)
}

// errRollbackStarted is what a *stopError is: the release under test is
// going away, so the tests stop.
var errRollbackStarted = errors.New("rollback started")

// history is the run's fold (runstate: the tests started or ended, the
// rollback asked for or started, its verification) and, from the same
// loop, the last event of each type: the suite results already recorded,
// which a redelivery reuses instead of testing again.
type history struct {
	*runstate.State
	byType map[string]*runbookv1.Event
	// lastSeq is the stream sequence of the run's latest event.
	lastSeq uint64
}

func (h history) first(types ...string) *runbookv1.Event {
	for _, t := range types {
		if ev := h.byType[t]; ev != nil {
			return ev
		}
	}
	return nil
}

func (s *Service) history(ctx context.Context, runID string) (history, error) {
	envs, err := s.bus.RunHistory(ctx, runID)
	if err != nil {
		return history{}, err
	}
	h := history{State: runstate.New(runID), byType: map[string]*runbookv1.Event{}}
	for _, e := range envs {
		h.lastSeq = max(h.lastSeq, e.Seq)
		if h.ApplyAt(e.Seq, e.Event) {
			h.byType[e.Event.GetType()] = e.Event
		}
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
	if h.TestsEnded() {
		log.Info("run already tested; nothing to do", "outcome", h.TestOutcome.GetType())
		return nil
	}
	if st := stopIn(h.State); st != nil {
		if h.TestStart != nil { // a redelivery: the tests had begun
			return s.finishStopped(ctx, ev, st, recorded(h), nil, 0, nil, log)
		}
		log.Info("rollback already under way; not testing a release that is going away", "by", st.by)
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
	steps := t.SmokeSteps() // test.smoke, then test.suites in order
	if len(steps) == 0 && t.Load == nil {
		log.Info("no tests in the plan")
		return s.finish(ctx, ev, t, verdict{pass: true, reason: "no tests in the plan"}, log)
	}

	if h.TestStart == nil {
		started := &runbookv1.TestStarted{SmokeTests: int32(len(steps)), LoadTest: t.Load != nil}
		if err := s.publishOnce(ctx, eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_TestStarted{TestStarted: started}), ev)); err != nil {
			return err
		}
	}

	// From here on a rollback of the run (asked for by the monitor, an
	// operator, ...) stops the tests: tctx is cancelled with a *stopError.
	tctx, stopWatch := s.watchRollback(ctx, run, h.lastSeq+1, log)
	defer stopWatch()

	var v verdict
	if len(steps) > 0 {
		suite, err := s.smoke(tctx, ev, pl, steps, h, log)
		if st := (*stopError)(nil); errors.As(err, &st) {
			return s.finishStopped(ctx, ev, st, v, suite, int32(len(steps)-len(suite.GetTests())), nil, log)
		}
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
			res, pass, err := s.load(tctx, ev, t, pl.ChangeRequest.ID, h, log)
			if st := (*stopError)(nil); errors.As(err, &st) {
				return s.finishStopped(ctx, ev, st, v, nil, 0, res, log)
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

// smoke runs the smoke tests and suites in order (values captured by one
// step are used by later ones), or returns the result already recorded.
// Details and errors come redacted from httprun: no captured secret, and no
// value of an environment variable the plan names (plan.SecretEnv), is
// logged or published. A step sends environment values only to the plan's
// test.secret_hosts.
func (s *Service) smoke(ctx context.Context, cause *runbookv1.Event, pl *plan.Plan, steps []plan.SmokeStep, h history, log *slog.Logger) (*runbookv1.TestSuiteResult, error) {
	if prev := h.first("test.smoke.failed", "test.smoke.passed"); prev != nil {
		log.Info("smoke suite already recorded; not re-running it", "outcome", prev.GetType())
		if r := prev.GetTestSmokeFailed(); r != nil {
			return r, nil
		}
		return prev.GetTestSmokePassed(), nil
	}
	suite, err := s.runSmoke(ctx, pl, steps, log)
	if st := stopped(ctx); st != nil {
		// Stopped by the rollback: what completed before it is reported
		// with the stopped outcome, not as the suite's result.
		return suite, st
	}
	if err != nil {
		return nil, err
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

// runSmoke runs smoke steps in order with the plan's secrets, redaction and
// captures (values captured by one step are used by later ones) and
// returns their results. A step cut short because ctx ended is not a
// result; RunSteps then returns ctx's error.
func (s *Service) runSmoke(ctx context.Context, pl *plan.Plan, steps []plan.SmokeStep, log *slog.Logger) (*runbookv1.TestSuiteResult, error) {
	runner := &httprun.Smoke{Client: s.opts.SmokeClient, Env: s.opts.LookupEnv, MaxBody: s.opts.MaxBody,
		SecretHosts: pl.Test.SecretHosts, SecretEnv: pl.SecretEnv()}
	suite := &runbookv1.TestSuiteResult{}
	err := runner.RunSteps(ctx, steps, func(c httprun.CaseResult) {
		if ctx.Err() != nil {
			return // it ended as the tests stopped: not a result of this release
		}
		tc := &runbookv1.TestCase{Name: c.Name, Type: c.Type, Status: c.Status(), DurationMs: c.Duration.Milliseconds(), Details: c.Details, Error: c.Error}
		suite.Tests = append(suite.Tests, tc)
		switch {
		case c.Pass:
			suite.Passed++
		case !c.Skipped: // a skip follows the failure that caused it
			suite.Failed++
		}
		s.m.tests.WithLabelValues(tc.Type, tc.Status).Inc()
		log.Info("smoke test", "suite", c.Suite, "step", tc.Name, "status", tc.Status, "duration_ms", tc.DurationMs, "error", tc.Error)
	})
	return suite, err
}

// load runs the load test, or returns the result already recorded. When the
// run's rollback stops it (ctx cancelled with a *stopError) it returns that
// error with what was measured until the last progress point before the stop
// (partialLoad), unpublished. changeID and the load
// test's target find the regression baseline: the last passed load test of
// the same change or the same target.
func (s *Service) load(ctx context.Context, cause *runbookv1.Event, t plan.Test, changeID string, h history, log *slog.Logger) (*runbookv1.LoadResult, bool, error) {
	run := cause.GetRunId()
	lt := t.Load
	if prev := h.first("test.load.failed", "test.load.passed"); prev != nil {
		log.Info("load test already recorded; not re-running it", "outcome", prev.GetType())
		if r := prev.GetTestLoadFailed(); r != nil {
			return r, false, nil
		}
		return prev.GetTestLoadPassed(), true, nil
	}
	gates := loadGates(lt)
	cfg, cerr := loadConfig(lt, t.SecretHosts, s.opts.LookupEnv)
	res := &runbookv1.LoadResult{Vus: int32(cfg.VUs), DurationMs: cfg.Duration.Milliseconds(), GateP95Ms: gates.P95MS, GateErrorRate: gates.ErrorRate,
		Model: lt.EffectiveModel(), TargetRate: lt.Rate, ChangeId: changeID, Target: loadTarget(lt)}
	for _, p := range gates.Percentiles {
		res.GatePercentiles = append(res.GatePercentiles, p.Percentile)
		res.GatePercentileMs = append(res.GatePercentileMs, p.MaxMS)
	}
	pass := false
	if st := stopped(ctx); st != nil {
		return nil, false, st // stopped before it began: not run
	}
	if cerr != nil {
		res.Reason = cerr.Error()
	} else {
		cfg.RequestTimeout, cfg.GracefulStop, cfg.ProgressEvery = s.opts.LoadRequestTimeout, s.opts.GracefulStop, s.opts.ProgressEvery
		cfg.Gates, cfg.AbortEarly = &gates, lt.EffectiveAbortEarly()
		log.Info("load test started", "model", res.Model, "vus", cfg.VUs, "rate", cfg.Rate, "duration", cfg.Duration.String(), "requests", len(cfg.Requests))
		rep, err := s.runLoad(ctx, cause, cfg, log)
		if st := stopped(ctx); st != nil {
			res = partialLoad(res, rep, st)
			log.Info("load test stopped", "requests", res.Requests, "errors", res.Errors, "p95_ms", res.P95Ms, "reason", res.Reason)
			return res, false, st
		}
		if err != nil {
			return nil, false, err
		}
		v := loadstat.Judge(rep.Snapshot, gates, rep.Stats.Quantile)
		pass = v.Pass
		fillLoadResult(res, rep)
		res.Reason = v.Reason
		if rep.Aborted != "" {
			pass = false
			if res.Reason == "" {
				res.Reason = "aborted early: " + rep.Aborted
			} else {
				res.Reason += " (aborted early: " + rep.Aborted + ")"
			}
		}
		if lt.RegressionEnabled() {
			r, err := s.regression(ctx, run, lt, res, rep.Samples)
			if err != nil {
				return nil, false, err
			}
			res.Regression, res.RegressionClass, res.BaselineRun = r.String(), r.Class.String(), r.BaselineRun
			if r.Regressed() {
				pass = false
				res.Reason = strings.TrimPrefix(res.Reason+"; "+r.String(), "; ")
			}
			log.Info("load regression", "class", res.RegressionClass, "baseline_run", r.BaselineRun, "result", res.Regression)
		}
		if js, err := k6Summary(rep, gates); err != nil {
			log.Warn("k6 summary not built", "err", err)
		} else {
			res.K6SummaryJson = string(js)
			if err := s.writeSummary(run, js); err != nil {
				log.Warn("k6 summary not written", "err", err)
			}
		}
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

// fillLoadResult copies the engine's report into the event.
func fillLoadResult(res *runbookv1.LoadResult, rep httprun.LoadReport) {
	res.Vus = int32(rep.VUs)
	res.DurationMs = rep.Elapsed.Milliseconds()
	res.Requests, res.Errors, res.ErrorRate = rep.Requests, rep.Errors, rep.ErrorRate()
	res.AvgMs, res.P95Ms, res.MaxMs, res.Rps = round2(rep.AvgMS), round2(rep.P95MS), round2(rep.MaxMS), round2(rep.RPS)
	res.Overall = latencyStats(rep.Stats.Overall)
	for _, n := range rep.Stats.ByName {
		res.ByRequest = append(res.ByRequest, latencyStats(n))
	}
	res.ErrorsByKind = rep.Stats.ErrorsByKind
	res.Aborted = rep.Aborted != ""
	res.LatencySamplesMs = make([]float64, 0, len(rep.Samples))
	for _, v := range rep.Samples {
		res.LatencySamplesMs = append(res.LatencySamplesMs, math.Round(v*1000)/1000) // µs are enough
	}
}

func latencyStats(l loadstat.Latency) *runbookv1.LatencyStats {
	return &runbookv1.LatencyStats{Name: l.Name, Requests: l.Requests, Errors: l.Errors, AvgMs: round2(l.AvgMS),
		P50Ms: round2(l.P50MS), P90Ms: round2(l.P90MS), P95Ms: round2(l.P95MS), P99Ms: round2(l.P99MS), MaxMs: round2(l.MaxMS), MinMs: round2(l.MinMS)}
}

// k6Summary is the run's summary in the shape of k6's handleSummary data.
func k6Summary(rep httprun.LoadReport, g loadstat.Gates) ([]byte, error) {
	sum, err := k6summary.Build(k6summary.FromReport(rep, g))
	if err != nil {
		return nil, err
	}
	return sum.JSON()
}

// writeSummary writes <SummaryDir>/<run>-k6-summary.json (atomically) when
// a summary directory is set.
func (s *Service) writeSummary(run string, js []byte) error {
	if s.opts.SummaryDir == "" {
		return nil
	}
	if err := os.MkdirAll(s.opts.SummaryDir, 0o755); err != nil {
		return fmt.Errorf("summary dir %s: %w", s.opts.SummaryDir, err)
	}
	path := SummaryPath(s.opts.SummaryDir, run)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write k6 summary %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write k6 summary %s: %w", path, err)
	}
	return nil
}

// SummaryPath is where a run's k6-shaped summary is written in dir.
func SummaryPath(dir, run string) string { return filepath.Join(dir, run+"-k6-summary.json") }

// regression compares this run's latency samples with its baseline's: the
// last passed load test, before this run, of the same change id or the same
// target.
func (s *Service) regression(ctx context.Context, run string, lt *plan.LoadTest, res *runbookv1.LoadResult, samples []float64) (regress.Result, error) {
	var base *runbookv1.LoadResult
	var baseRun string
	err := s.bus.Scan(ctx, []string{eventbus.TypeSubjects("test.load.passed")}, 0, func(e eventbus.Envelope) error {
		r := e.Event.GetTestLoadPassed()
		if e.Event.GetRunId() == run || r == nil || len(r.GetLatencySamplesMs()) == 0 {
			return nil
		}
		if (res.GetChangeId() != "" && r.GetChangeId() == res.GetChangeId()) || r.GetTarget() == res.GetTarget() {
			base, baseRun = r, e.Event.GetRunId()
		}
		return nil
	})
	if err != nil {
		return regress.Result{}, fmt.Errorf("find the regression baseline of run %s: %w", run, err)
	}
	o := regress.Options{BaselineRun: baseRun}
	if r := lt.Regression; r != nil {
		o.Alpha, o.EffectFloor = r.Alpha, r.EffectFloor
	}
	return regress.Compare(base.GetLatencySamplesMs(), samples, o), nil
}

// runLoad runs one load test, publishing its progress, until it ends or ctx
// is cancelled (the run's rollback stops it: the report is then what it
// measured until the stop, with an error).
func (s *Service) runLoad(ctx context.Context, cause *runbookv1.Event, cfg httprun.LoadConfig, log *slog.Logger) (httprun.LoadReport, error) {
	run := cause.GetRunId()
	ok, failed := s.m.loadRequests.WithLabelValues("ok"), s.m.loadRequests.WithLabelValues("error")
	obs := httprun.LoadObserver{
		OnRequest: func(_ string, d time.Duration, kind loadstat.Kind) {
			if kind != loadstat.KindOK {
				failed.Inc()
			} else {
				ok.Inc()
			}
			if kind != loadstat.KindDropped {
				s.m.loadLatency.Observe(d.Seconds())
			}
		},
		OnProgress: func(p httprun.Progress) {
			if ctx.Err() != nil {
				return // stopped: nothing measured from now on is reported
			}
			pr := &runbookv1.LoadProgress{ElapsedMs: p.Elapsed.Milliseconds(), Requests: p.Requests, Errors: p.Errors, P95Ms: round2(p.P95MS),
				Vus: int32(p.VUs), Rps: round2(p.RPS), P99Ms: round2(p.P99MS), InFlight: p.InFlight}
			ev := eventbus.CausedBy(eventbus.New(run, &runbookv1.Event_TestLoadProgress{TestLoadProgress: pr}, p.Second), cause)
			if _, err := s.bus.Publish(ctx, ev); err != nil && ctx.Err() == nil {
				log.Warn("load progress not published", "err", err)
			}
		},
	}
	return httprun.RunLoad(ctx, cfg, obs)
}

// loadGates are the plan's gates, with the seed's defaults.
func loadGates(lt *plan.LoadTest) loadstat.Gates {
	eg := lt.EffectiveGates() // error_rate: 0 means no error allowed
	g := loadstat.Gates{P95MS: eg.P95MS, ErrorRate: eg.ErrorRate}
	for _, p := range lt.Gates.PercentileGates() {
		g.Percentiles = append(g.Percentiles, loadstat.PercentileGate{Percentile: p.Percentile, MaxMS: p.MaxMS})
	}
	return g
}

// loadTarget names what a load test hits, for matching a baseline: its
// requests' methods and URLs, in order.
func loadTarget(lt *plan.LoadTest) string {
	parts := make([]string, len(lt.Requests))
	for i, r := range lt.Requests {
		m := strings.ToUpper(strings.TrimSpace(r.Method))
		if m == "" {
			m = http.MethodGet
		}
		parts[i] = m + " " + r.URL
	}
	return strings.Join(parts, " | ")
}

// loadConfig turns the plan's load test into a runnable one, with the seed's
// defaults (50 VUs, 5 minutes, 1s think time). An explicit think_time: 0s
// means none (plan.Duration.Or). A request that carries environment values
// to a host outside secretHosts (test.secret_hosts) refuses the whole test
// before anything is sent.
func loadConfig(lt *plan.LoadTest, secretHosts []string, env httprun.LookupEnv) (httprun.LoadConfig, error) {
	cfg := httprun.LoadConfig{
		VUs:       lt.VUs,
		Duration:  lt.Duration.Or(httprun.DefaultLoadDuration),
		ThinkTime: lt.ThinkTime.Or(httprun.DefaultThinkTime),
		Rate:      lt.Rate,
	}
	for _, st := range lt.Stages {
		cfg.Stages = append(cfg.Stages, httprun.Stage{Duration: st.Duration.Duration, Target: st.Target})
	}
	switch {
	case cfg.Rate > 0:
		cfg.VUs, cfg.ThinkTime, cfg.MaxInFlight = 0, 0, lt.EffectiveMaxInFlight()
	case len(cfg.Stages) > 0:
		cfg.VUs, cfg.Duration = 0, lt.StagesDuration()
		for _, st := range cfg.Stages {
			cfg.VUs = max(cfg.VUs, st.Target)
		}
	case cfg.VUs <= 0:
		cfg.VUs = httprun.DefaultVUs
	}
	if len(lt.Requests) == 0 {
		return cfg, errors.New("load test has no requests")
	}
	for i, r := range lt.Requests {
		p, err := httprun.Prepare(r, env)
		if err == nil {
			err = p.Guard(plan.RequestEnv(r), secretHosts)
		}
		if err != nil {
			return cfg, fmt.Errorf("load request %d: %w", i+1, err)
		}
		cfg.Requests = append(cfg.Requests, p)
		cfg.Names = append(cfg.Names, r.Name)
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
	var names, skipped []string
	for _, c := range s.GetTests() {
		switch c.GetStatus() {
		case httprun.StatusPass:
		case httprun.StatusSkip:
			skipped = append(skipped, c.GetName())
		default:
			names = append(names, fmt.Sprintf("%s (%s)", c.GetName(), c.GetError()))
		}
	}
	if len(names) > 0 {
		msg := fmt.Sprintf("%d of %d smoke tests failed: %s", len(names), len(s.GetTests()), strings.Join(names, ", "))
		if len(skipped) > 0 {
			msg += fmt.Sprintf("; %d skipped: %s", len(skipped), strings.Join(skipped, ", "))
		}
		v.failures = append(v.failures, msg)
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
		g := loadstat.Gates{P95MS: r.GetGateP95Ms(), ErrorRate: r.GetGateErrorRate()}
		for i, q := range r.GetGatePercentiles() {
			if i < len(r.GetGatePercentileMs()) {
				g.Percentiles = append(g.Percentiles, loadstat.PercentileGate{Percentile: q, MaxMS: r.GetGatePercentileMs()[i]})
			}
		}
		o := r.GetOverall()
		quantile := func(q float64) float64 {
			switch q {
			case 50:
				return o.GetP50Ms()
			case 90:
				return o.GetP90Ms()
			case 95:
				return o.GetP95Ms()
			case 99:
				return o.GetP99Ms()
			case 100:
				return o.GetMaxMs()
			}
			return math.NaN() // not in the event: never over its gate here
		}
		j := loadstat.Judge(loadstat.Snapshot{Requests: r.GetRequests(), Errors: r.GetErrors(), P95MS: r.GetP95Ms()}, g, quantile)
		v.metric, v.value, v.threshold = j.Metric, j.Value, j.Threshold
		if j.Pass && r.GetRegressionClass() == regress.High.String() {
			v.metric, v.value, v.threshold = "latency_regression", r.GetP95Ms(), 0
		}
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
	// One outcome per run, whichever replica's comes first: both types
	// share a message id, so the stream drops a second one (a replica that
	// took over a redelivered deploy.done while the first still ran).
	ev.Id = eventbus.ID(run, TestOutcomeID)
	if err := s.publishOnce(ctx, eventbus.CausedBy(ev, cause)); err != nil {
		return err
	}
	log.Info("test phase finished", "outcome", ev.GetType(), "passed", v.passed, "failed", v.failed, "reason", v.reason)
	return nil
}

// The message ids of the outcomes a run has one of, whatever their type.
const (
	TestOutcomeID         = "test.outcome"
	VerificationOutcomeID = "rollback.verification"
)

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
