package httprun

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/expect"
	"github.com/kis-core/runbook/domain/plan"
)

// Defaults of a smoke test.
const (
	DefaultSmokeTimeout = 10 * time.Second
	DefaultSmokeType    = "smoke"
	DefaultMaxBody      = 10 << 20
)

// The statuses of a smoke test, as the seed's results write them (and SKIP
// for a step that could not run because a value it needs was not captured).
const (
	StatusPass = "PASS"
	StatusFail = "FAIL"
	StatusSkip = "SKIP"
)

// CaseResult is the outcome of one smoke test. Details and Error never hold
// a secret captured value or ${env:NAME} value in clear: they are replaced
// by [name].
type CaseResult struct {
	Name     string
	Type     string // the plan's type, "smoke" by default
	Suite    string // the suite's name; empty for test.smoke
	Pass     bool
	Skipped  bool // not run: a value it needs was not captured (Error says which and why)
	Duration time.Duration
	Details  string
	Error    string
}

// Status is PASS, FAIL or SKIP.
func (c CaseResult) Status() string {
	switch {
	case c.Pass:
		return StatusPass
	case c.Skipped:
		return StatusSkip
	}
	return StatusFail
}

// Smoke runs smoke tests one at a time.
type Smoke struct {
	Client *http.Client
	Env    LookupEnv
	// MaxBody bounds the response body kept for JSON checks.
	MaxBody int64
	// SecretHosts is the plan's test.secret_hosts: a step whose request
	// carries a value from the environment (${env:NAME}, headers_env) is
	// sent only to one of them, and never redirected elsewhere. None: such
	// a step is not sent at all (it fails, saying why).
	SecretHosts []string
	// SecretEnv names further environment variables whose values never
	// appear in a result (the plan's plan.SecretEnv); the ${env:NAME}
	// values a step uses are hidden anyway.
	SecretEnv []string
}

// Run runs t on its own (nothing captured before it). It returns an error
// only when ctx ended (the test was interrupted and proved nothing); a
// failing target is a failing CaseResult.
func (s *Smoke) Run(ctx context.Context, t plan.SmokeTest) (CaseResult, error) {
	var res CaseResult
	err := s.RunSteps(ctx, []plan.SmokeStep{{SmokeTest: t}}, func(c CaseResult) { res = c })
	return res, err
}

// RunSteps runs steps in order, sharing the values they capture: a step's
// capture is taken only when the step passed, and is visible to every later
// step as ${name}. A step that needs a value that was not captured is not
// sent: it is SKIP, its error naming the value, the step that should have
// captured it and why it did not. each is called with every result as it
// is known. RunSteps returns an error only when ctx ended.
func (s *Smoke) RunSteps(ctx context.Context, steps []plan.SmokeStep, each func(CaseResult)) error {
	r := suiteRun{s: s, client: GuardRedirects(s.Client), vars: expect.NewVars(s.Env), missing: map[string]string{}}
	for _, name := range s.SecretEnv {
		r.vars.SecretEnv(name)
	}
	for _, st := range steps {
		c, err := r.step(ctx, st)
		if err != nil {
			return err
		}
		c.Details, c.Error = r.vars.Redact(c.Details), r.vars.Redact(c.Error)
		each(c)
	}
	return nil
}

// suiteRun is the state of one RunSteps.
type suiteRun struct {
	s      *Smoke
	client *http.Client // s.Client, with GuardRedirects
	vars   *expect.Vars
	// missing: a value that will not be captured → why.
	missing map[string]string
}

// giveUp records that none of st's captures will be there, and why.
func (r *suiteRun) giveUp(st plan.SmokeStep, why string) {
	for name := range st.Capture {
		r.missing[name] = fmt.Sprintf("step %q %s", st.EffectiveName(), why)
	}
}

func (r *suiteRun) step(ctx context.Context, st plan.SmokeStep) (CaseResult, error) {
	t := st.SmokeTest
	res := CaseResult{Name: t.EffectiveName(), Type: t.Type, Suite: st.Suite}
	if res.Type == "" {
		res.Type = DefaultSmokeType
	}
	refs, err := expect.Refs(t.Request)
	if err != nil {
		res.Error = err.Error()
		r.giveUp(st, "failed")
		return res, nil
	}
	for _, name := range refs {
		if r.vars.Has(name) {
			continue
		}
		why, ok := r.missing[name]
		if !ok {
			why = "no earlier step captures it"
		}
		res.Skipped = true
		res.Error = fmt.Sprintf("skipped: needs ${%s}, which was not captured: %s", name, why)
		r.giveUp(st, "was skipped")
		return res, nil
	}
	req, err := r.vars.Expand(t.Request)
	if err != nil {
		res.Error = err.Error()
		r.giveUp(st, "failed")
		return res, nil
	}
	captures, err := t.Captures()
	if err != nil {
		res.Error = err.Error()
		r.giveUp(st, "failed")
		return res, nil
	}

	p, err := Prepare(req, r.s.Env)
	if err == nil {
		// The expanded url's host: a host taken from a captured value is
		// checked too.
		err = p.Guard(plan.RequestEnv(t.Request), r.s.SecretHosts)
	}
	if err != nil {
		res.Error = err.Error()
		r.giveUp(st, "failed")
		return res, nil
	}
	maxBody := r.s.MaxBody
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	timeout := t.Timeout.Or(DefaultSmokeTimeout)
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := Send(tctx, r.client, p, maxBody, true)
	res.Duration = resp.Duration
	if err != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("smoke test %q interrupted: %w", res.Name, context.Cause(ctx))
		}
		if tctx.Err() != nil {
			res.Error = fmt.Sprintf("no answer within %s: %v", timeout, err)
		} else {
			res.Error = err.Error()
		}
		res.Details = fmt.Sprintf("%s failed after %dms", p.Label(), expect.Millis(resp.Duration))
		r.giveUp(st, "failed: "+res.Error)
		return res, nil
	}
	obs := expect.Observation{Status: resp.Status, Duration: resp.Duration, Body: resp.Body, Header: resp.Header}
	ev := expect.Evaluate(t.Expect, obs)
	res.Pass, res.Details, res.Error = ev.Pass, ev.Details, ev.Error()
	if !ev.Pass {
		r.giveUp(st, "failed: "+res.Error)
		return res, nil
	}
	var errs, got []string
	for _, name := range sortedAnyKeys(t.Capture) {
		c := captures[name]
		v, err := expect.Capture(c, obs)
		if err != nil {
			msg := fmt.Sprintf("capture %s: %v", name, err)
			errs = append(errs, msg)
			r.missing[name] = fmt.Sprintf("step %q could not capture it: %v", res.Name, err)
			continue
		}
		r.vars.Set(name, v, c.Secret)
		got = append(got, name)
	}
	if len(got) > 0 {
		res.Details += ", captured " + strings.Join(got, ", ")
	}
	if len(errs) > 0 {
		res.Pass = false
		res.Error = strings.Join(errs, "; ")
	}
	return res, nil
}

func sortedAnyKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
