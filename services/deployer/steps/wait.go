package steps

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/kis-core/runbook/domain/expect"
	"github.com/kis-core/runbook/domain/plan"
)

// waitUntil GETs u.URL every interval until its response meets every
// assertion of u.Expectation() (by default: any 2xx), for at most
// u.Timeout (the step's own timeout bounds ctx as well).
func (x *Executor) waitUntil(ctx context.Context, u *plan.WaitUntil) Result {
	if u.Timeout.IsSet() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, u.Timeout.Duration)
		defer cancel()
	}
	interval := u.EffectiveInterval()
	want := u.Expectation()
	need := u.EffectiveSuccesses()
	t0 := time.Now()
	var last string
	passes := 0 // in a row
	for n := 1; ; n++ {
		obs, err := x.check(ctx, u.URL)
		var r expect.Result
		if err == nil {
			r = expect.Evaluate(want, obs)
		}
		if err == nil && r.Pass {
			passes++
		} else {
			passes = 0
		}
		switch {
		case passes >= need:
			return Result{OutputTail: fmt.Sprintf("%s answered %s after %d check(s) in %s", u.URL, r.Details, n, time.Since(t0).Round(time.Millisecond))}
		case passes > 0:
			last = fmt.Sprintf("%d of %d checks in a row passed", passes, need)
		case err != nil && ctx.Err() != nil && last != "":
			// cut short by the deadline: the previous answer says more
		case err != nil:
			last = err.Error()
		default:
			last = r.Error()
		}
		t := time.NewTimer(interval)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Result{
				OutputTail: fmt.Sprintf("%d check(s), last: %s", n, last),
				Err:        fmt.Errorf("wait until %s: not ready after %s (last: %s): %w", u.URL, time.Since(t0).Round(time.Millisecond), last, context.Cause(ctx)),
			}
		}
	}
}

// check GETs url once (each attempt bounded by plan.DefaultHealthTimeout).
func (x *Executor) check(ctx context.Context, url string) (expect.Observation, error) {
	cctx, cancel := context.WithTimeout(ctx, plan.DefaultHealthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, url, nil)
	if err != nil {
		return expect.Observation{}, err
	}
	return x.observe(req)
}
