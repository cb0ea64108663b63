package steps_test

import (
	"context"
	"fmt"
	"net"
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

// After a gateway's reload the old workers keep the connections they
// hold: a connection opened before the switch still answers the old
// configuration while new clients get the new one. A wait must see what a
// new client sees, so every attempt opens its own connection: here the
// first connection (opened while "maintenance" was current) would answer
// "ready" for ever, new ones answer "maintenance" until the switch.
func TestWaitAttemptsUseNewConnections(t *testing.T) {
	t.Parallel()
	var conns, switchAt atomic.Int64
	switchAt.Store(3) // the 3rd connection and later reach the new configuration
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := r.Context().Value(connKey{}).(int64)
		if n == 1 || n >= switchAt.Load() {
			w.Write([]byte(`{"state":"ready"}`)) // the kept-alive first connection, or after the switch
			return
		}
		w.Write([]byte(`{"state":"maintenance"}`))
	}))
	srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, conns.Add(1))
	}
	srv.Start()
	t.Cleanup(srv.Close)
	x := &steps.Executor{HTTP: &http.Client{}}
	// A first request, as an earlier step would make, on a connection the
	// client keeps.
	first := x.Run(context.Background(), plan.Step{HTTP: &plan.HTTPStep{Method: "GET", URL: srv.URL}}, nil)
	if first.Err != nil {
		t.Fatal(first.Err)
	}
	until := &plan.WaitUntil{URL: srv.URL, Interval: plan.Duration{Duration: 10 * time.Millisecond},
		Expect: plan.Expect{JSON: map[string]any{"state": "ready"}}}
	res := x.Run(context.Background(), plan.Step{Wait: &plan.WaitStep{Until: until}}, nil)
	if res.Err != nil || conns.Load() != 3 || !strings.Contains(res.OutputTail, "after 2 check(s)") {
		t.Errorf("wait: %d connections, %q %v; want a new connection per check: the kept-alive one must not pass it", conns.Load(), res.OutputTail, res.Err)
	}
}

type connKey struct{}

// successes: N checks in a row must pass; a failure in between starts
// the count again.
func TestWaitUntilSuccessesInARow(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	// ready, not ready, then ready for good: the first pass does not count.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if n.Add(1) == 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	until := &plan.WaitUntil{URL: srv.URL, Successes: 3, Interval: plan.Duration{Duration: 5 * time.Millisecond}}
	res := (&steps.Executor{}).Run(context.Background(), plan.Step{Wait: &plan.WaitStep{Until: until}}, nil)
	if res.Err != nil || n.Load() != 5 || !strings.Contains(res.OutputTail, "after 5 check(s)") {
		t.Errorf("3 in a row: %d checks, %q %v", n.Load(), res.OutputTail, res.Err)
	}
}
