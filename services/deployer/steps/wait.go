package steps

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

// waitUntil GETs u.URL every interval until it answers the expected status,
// for at most u.Timeout (the step's own timeout bounds ctx as well).
func (x *Executor) waitUntil(ctx context.Context, u *plan.WaitUntil) Result {
	if u.Timeout.IsSet() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, u.Timeout.Duration)
		defer cancel()
	}
	interval := u.EffectiveInterval()
	t0 := time.Now()
	var last string
	for n := 1; ; n++ {
		status, err := x.check(ctx, u.URL)
		switch {
		case err == nil && statusOK(status, u.ExpectStatus):
			return Result{OutputTail: fmt.Sprintf("%s answered HTTP %d after %d check(s) in %s", u.URL, status, n, time.Since(t0).Round(time.Millisecond))}
		case err != nil && ctx.Err() != nil && last != "":
			// cut short by the deadline: the previous answer says more
		case err != nil:
			last = err.Error()
		default:
			last = fmt.Sprintf("HTTP %d, want %s", status, wantStatus(u.ExpectStatus))
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

func (x *Executor) check(ctx context.Context, url string) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, plan.DefaultHealthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := x.client().Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.StatusCode, nil
}
