package steps_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/services/deployer/steps"
)

// switchingTarget answers {"release":"old"} to its first oldAnswers
// requests (every request when oldAnswers < 0), then {"release":"new"}.
func switchingTarget(t *testing.T, oldAnswers int32) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Release-Line", "v2")
		if k := n.Add(1); oldAnswers < 0 || k <= oldAnswers {
			fmt.Fprint(w, `{"release":"old","items":[{"id":"a"}]}`)
			return
		}
		fmt.Fprint(w, `{"release":"new","items":[{"id":"b"}]}`)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

var releaseNew = plan.Expect{JSON: map[string]any{"$.release": "new"}}

// wait.until with expect waits for the assertions, not only the status.
func TestWaitUntilExpect(t *testing.T) {
	t.Parallel()
	srv, n := switchingTarget(t, 2)
	x := &steps.Executor{}
	until := &plan.WaitUntil{URL: srv.URL, Interval: plan.Duration{Duration: 20 * time.Millisecond},
		Expect: plan.Expect{Status: 200, JSON: map[string]any{"$.release": "new", "items[0].id": "b"}, Headers: map[string]string{"X-Release-Line": "v2"}}}
	res := x.Run(context.Background(), plan.Step{Wait: &plan.WaitStep{Until: until}}, nil)
	if res.Err != nil || n.Load() != 3 || !strings.Contains(res.OutputTail, "after 3 check(s)") || !strings.Contains(res.OutputTail, "$.release=new") {
		t.Errorf("wait until the new release: %d requests, %q, %v", n.Load(), res.OutputTail, res.Err)
	}

	srv, _ = switchingTarget(t, -1)
	until = &plan.WaitUntil{URL: srv.URL, Interval: plan.Duration{Duration: 20 * time.Millisecond}, Timeout: plan.Duration{Duration: 120 * time.Millisecond}, Expect: releaseNew}
	res = x.Run(context.Background(), plan.Step{Wait: &plan.WaitStep{Until: until}}, nil)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "not ready") || !strings.Contains(res.Err.Error(), `field $.release is "old" (expected "new")`) {
		t.Errorf("wait until an assertion that never holds: %v", res.Err)
	}
}

// One health attempt: every unmet assertion is named with the value found;
// expect_status still gives the status when expect.status is not written.
func TestHealthExpect(t *testing.T) {
	t.Parallel()
	srv, _ := switchingTarget(t, -1)
	x := &steps.Executor{}
	res := x.Health(context.Background(), plan.HealthCheck{URL: srv.URL, ExpectStatus: 201, Expect: plan.Expect{
		JSON:         map[string]any{"$.release": "new"},
		JSONAbsent:   []string{"items"},
		BodyContains: []string{"ready"},
		HeadersMatch: map[string]string{"X-Release-Line": "^v3"},
	}})
	if res.Err == nil {
		t.Fatal("an old release passed the health check")
	}
	for _, want := range []string{
		srv.URL + ": UNHEALTHY: ",
		"HTTP 200 (expected 201)",
		`field $.release is "old" (expected "new")`,
		`field items is present (expected absent)`,
		`body does not contain "ready"`,
		`header X-Release-Line is "v2" (does not match ^v3)`,
	} {
		if !strings.Contains(res.Err.Error(), want) {
			t.Errorf("health error %q lacks %q", res.Err, want)
		}
	}
	srv, _ = switchingTarget(t, 0)
	res = x.Health(context.Background(), plan.HealthCheck{URL: srv.URL, Expect: releaseNew})
	if res.Err != nil || !strings.Contains(res.OutputTail, "HEALTHY (HTTP 200") || !strings.Contains(res.OutputTail, "$.release=new") {
		t.Errorf("new release: %q, %v", res.OutputTail, res.Err)
	}
}

// An http step fails when an assertion fails, naming it; it passes when
// they all hold.
func TestHTTPStepExpect(t *testing.T) {
	t.Parallel()
	srv, _ := switchingTarget(t, 1)
	x := &steps.Executor{}
	st := plan.Step{HTTP: &plan.HTTPStep{URL: srv.URL, Expect: releaseNew}}
	res := x.Run(context.Background(), st, nil)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "POST "+srv.URL+`: field $.release is "old" (expected "new")`) {
		t.Errorf("old release: %v", res.Err)
	}
	res = x.Run(context.Background(), st, nil)
	if res.Err != nil || !strings.Contains(res.OutputTail, `HTTP 200 {"release":"new"`) {
		t.Errorf("new release: %q, %v", res.OutputTail, res.Err)
	}
}
