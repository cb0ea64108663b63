package httprun

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/services/tester/expect"
)

// Defaults of a smoke test.
const (
	DefaultSmokeTimeout = 10 * time.Second
	DefaultSmokeType    = "smoke"
	DefaultMaxBody      = 10 << 20
)

// CaseResult is the outcome of one smoke test.
type CaseResult struct {
	Name     string
	Type     string // the plan's type, "smoke" by default
	Pass     bool
	Duration time.Duration
	Details  string
	Error    string
}

// Smoke runs smoke tests one at a time.
type Smoke struct {
	Client *http.Client
	Env    LookupEnv
	// MaxBody bounds the response body kept for JSON checks.
	MaxBody int64
}

// Run runs t. It returns an error only when ctx ended (the test was
// interrupted and proved nothing); a failing target is a failing CaseResult.
func (s *Smoke) Run(ctx context.Context, t plan.SmokeTest) (CaseResult, error) {
	res := CaseResult{Name: t.Name, Type: t.Type}
	if res.Type == "" {
		res.Type = DefaultSmokeType
	}
	if res.Name == "" {
		res.Name = t.Request.Method + " " + t.Request.URL
		if t.Request.Method == "" {
			res.Name = http.MethodGet + " " + t.Request.URL
		}
	}
	p, err := Prepare(t.Request, s.Env)
	if err != nil {
		res.Error = err.Error()
		return res, nil
	}
	maxBody := s.MaxBody
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	tctx, cancel := context.WithTimeout(ctx, t.Timeout.Or(DefaultSmokeTimeout))
	defer cancel()
	resp, err := Send(tctx, s.Client, p, maxBody, true)
	res.Duration = resp.Duration
	if err != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("smoke test %q interrupted: %w", res.Name, context.Cause(ctx))
		}
		if tctx.Err() != nil {
			res.Error = fmt.Sprintf("no answer within %s: %v", t.Timeout.Or(DefaultSmokeTimeout), err)
		} else {
			res.Error = err.Error()
		}
		res.Details = fmt.Sprintf("%s failed after %dms", p.Label(), expect.Millis(resp.Duration))
		return res, nil
	}
	r := expect.Evaluate(t.Expect, expect.Observation{Status: resp.Status, Duration: resp.Duration, Body: resp.Body})
	res.Pass, res.Details, res.Error = r.Pass, r.Details, r.Error()
	return res, nil
}
