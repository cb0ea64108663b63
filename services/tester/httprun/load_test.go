package httprun

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/services/tester/loadstat"
)

func prep(t *testing.T, url string) *Prepared {
	t.Helper()
	p, err := Prepare(plan.Request{URL: url}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunLoadClosed(t *testing.T) {
	t.Parallel()
	srv := target(t)
	var onReq atomic.Int64
	var progress []Progress
	rep, err := RunLoad(context.Background(), LoadConfig{
		VUs: 2, Duration: 1200 * time.Millisecond, ThinkTime: 50 * time.Millisecond,
		Requests: []*Prepared{prep(t, srv.URL+"/health"), prep(t, srv.URL+"/fail")}, Names: []string{"health"},
	}, LoadObserver{
		OnRequest:  func(string, time.Duration, loadstat.Kind) { onReq.Add(1) },
		OnProgress: func(p Progress) { progress = append(progress, p) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests < 4 || rep.Requests != onReq.Load() || rep.VUs != 2 || rep.Model != "closed" {
		t.Fatalf("report %+v, OnRequest %d", rep, onReq.Load())
	}
	// Every iteration sends one good and one failing request, in order.
	if rep.Errors < rep.Requests/2-2 || rep.Errors > rep.Requests/2+2 {
		t.Errorf("errors %d of %d, want about half", rep.Errors, rep.Requests)
	}
	if rep.Iterations < 2 || rep.RPS <= 0 || rep.P95MS <= 0 || rep.MaxMS < rep.P95MS || rep.Elapsed < 1200*time.Millisecond {
		t.Errorf("report %+v", rep)
	}
	// Per request name: the first named in the plan, the second by its label.
	by := rep.Stats.ByName
	if len(by) != 2 || by[0].Name != "health" || by[1].Name != "GET "+srv.URL+"/fail" || by[0].Errors != 0 || by[1].Errors != by[1].Requests ||
		by[0].Requests+by[1].Requests != rep.Requests || by[0].P50MS <= 0 || by[0].P99MS < by[0].P50MS {
		t.Errorf("by name %+v", by)
	}
	if k := rep.Stats.ErrorsByKind; len(k) != 1 || k["5xx"] != rep.Errors {
		t.Errorf("errors by kind %v, want all 5xx", k)
	}
	if len(rep.Samples) != int(rep.Requests) {
		t.Errorf("%d samples of %d requests", len(rep.Samples), rep.Requests)
	}
	// A tick at 1s, and the last point at the end (1.2s; its id second is the next one).
	if len(progress) != 2 || progress[0].Second != 1 || progress[1].Second != 2 || progress[0].Requests == 0 || progress[1].Requests != rep.Requests || progress[0].VUs != 2 {
		t.Errorf("progress %+v, want points 1 and 2", progress)
	}
}

func TestRunLoadErrorKinds(t *testing.T) {
	t.Parallel()
	srv := target(t)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close() // connection refused from now on
	rep, err := RunLoad(context.Background(), LoadConfig{
		VUs: 1, Duration: 400 * time.Millisecond, ThinkTime: 0, RequestTimeout: 50 * time.Millisecond,
		Requests: []*Prepared{prep(t, srv.URL+"/nope"), prep(t, srv.URL+"/slow"), prep(t, deadURL+"/x")},
	}, LoadObserver{})
	if err != nil {
		t.Fatal(err)
	}
	k := rep.Stats.ErrorsByKind
	if k["4xx"] == 0 || k["timeout"] == 0 || k["connection"] == 0 || k["4xx"]+k["timeout"]+k["connection"] != rep.Errors || rep.Errors != rep.Requests {
		t.Errorf("errors by kind %v of %d requests, %d errors", k, rep.Requests, rep.Errors)
	}
}

func TestRunLoadStagesRamp(t *testing.T) {
	t.Parallel()
	srv := target(t)
	var mu sync.Mutex
	var vus []int
	rep, err := RunLoad(context.Background(), LoadConfig{
		Stages:    []Stage{{Duration: 1 * time.Second, Target: 4}, {Duration: 1 * time.Second, Target: 4}, {Duration: 1 * time.Second, Target: 0}},
		ThinkTime: 20 * time.Millisecond,
		Requests:  []*Prepared{prep(t, srv.URL+"/health")},
	}, LoadObserver{OnProgress: func(p Progress) { mu.Lock(); vus = append(vus, p.VUs); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	// Ramping up to 4 over 1s (2 at 0.5s … 4 at 1s), holding 4, down to 0.
	if rep.VUs != 4 || rep.Elapsed < 3*time.Second || rep.Elapsed > 4*time.Second {
		t.Errorf("report VUs %d elapsed %s", rep.VUs, rep.Elapsed)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(vus) < 3 || vus[0] < 3 || vus[0] > 4 || vus[1] != 4 || vus[len(vus)-1] != 0 {
		t.Errorf("VUs at the progress points %v, want about 4, 4, …, 0", vus)
	}
}

func TestTargetAt(t *testing.T) {
	t.Parallel()
	c := LoadConfig{Stages: []Stage{{Duration: 10 * time.Second, Target: 10}, {Duration: 10 * time.Second, Target: 10}, {Duration: 5 * time.Second, Target: 0}}}
	for _, tt := range []struct {
		at   time.Duration
		want int
	}{{0, 0}, {5 * time.Second, 5}, {10 * time.Second, 10}, {15 * time.Second, 10}, {22500 * time.Millisecond, 5}, {30 * time.Second, 0}} {
		if got := c.targetAt(tt.at); got != tt.want {
			t.Errorf("targetAt(%s) = %d, want %d", tt.at, got, tt.want)
		}
	}
	if got := (&LoadConfig{VUs: 7}).targetAt(time.Hour); got != 7 {
		t.Errorf("constant VUs: %d", got)
	}
}

func TestRunLoadAbortsOnAClearlyFailedGate(t *testing.T) {
	t.Parallel()
	srv := target(t)
	start := time.Now()
	rep, err := RunLoad(context.Background(), LoadConfig{
		VUs: 4, Duration: 30 * time.Second, ThinkTime: 0,
		Requests: []*Prepared{prep(t, srv.URL+"/health"), prep(t, srv.URL+"/fail")},
		Gates:    &loadstat.Gates{P95MS: 2100, ErrorRate: 0.01}, AbortEarly: true,
	}, LoadObserver{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Aborted == "" || time.Since(start) > 10*time.Second || rep.Requests < loadstat.AbortMinRequests {
		t.Fatalf("aborted %q after %s with %d requests; want an early abort", rep.Aborted, time.Since(start), rep.Requests)
	}
	// Without AbortEarly the same test runs its course.
	rep, err = RunLoad(context.Background(), LoadConfig{
		VUs: 2, Duration: 600 * time.Millisecond, ThinkTime: 0,
		Requests: []*Prepared{prep(t, srv.URL+"/fail")}, Gates: &loadstat.Gates{P95MS: 2100, ErrorRate: 0.01},
	}, LoadObserver{})
	if err != nil || rep.Aborted != "" || rep.Elapsed < 600*time.Millisecond {
		t.Errorf("without abort_early: %v, aborted %q, elapsed %s", err, rep.Aborted, rep.Elapsed)
	}
}

func TestRunLoadGracefulStopAndInterrupt(t *testing.T) {
	t.Parallel()
	srv := target(t)
	slow := prep(t, srv.URL+"/slow")
	// Requests in flight at the end are cut at the graceful stop and not counted.
	rep, err := RunLoad(context.Background(), LoadConfig{
		VUs: 2, Duration: 100 * time.Millisecond, GracefulStop: 50 * time.Millisecond, Requests: []*Prepared{slow},
	}, LoadObserver{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 0 || rep.Interrupted != 2 {
		t.Errorf("report %+v, want 0 requests and 2 interrupted", rep)
	}
	// A cancelled context interrupts the test with its cause.
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(50*time.Millisecond, func() { cancel(context.Canceled) })
	if rep, err := RunLoad(ctx, LoadConfig{VUs: 1, Duration: 10 * time.Second, Requests: []*Prepared{slow}}, LoadObserver{}); err == nil {
		t.Error("interrupted load test returned no error")
	} else if rep.Elapsed <= 0 || rep.Elapsed > 5*time.Second || rep.Interrupted != 1 || rep.Requests != 0 {
		// What it measured until then (about 50ms: the timer was armed a
		// moment before the engine started): the request cut is not counted.
		t.Errorf("interrupted load test report %+v, want its ~50ms and the one request cut", rep)
	}
	if _, err := RunLoad(context.Background(), LoadConfig{}, LoadObserver{}); err == nil {
		t.Error("load test without requests returned no error")
	}
}

func TestNewLoadClient(t *testing.T) {
	t.Parallel()
	c := NewLoadClient(50)
	if tr := c.Transport.(*http.Transport); tr.MaxIdleConnsPerHost < 50 {
		t.Errorf("MaxIdleConnsPerHost = %d", tr.MaxIdleConnsPerHost)
	}
}

// TestOpenModelDropsBeyondMaxInFlight: arrivals that find max_in_flight
// iterations running are not sent, and count as errors of kind dropped.
func TestOpenModelDropsBeyondMaxInFlight(t *testing.T) {
	t.Parallel()
	srv := target(t)
	rep, err := RunLoad(context.Background(), LoadConfig{
		Rate: 100, MaxInFlight: 5, Duration: 1 * time.Second, Requests: []*Prepared{prep(t, srv.URL+"/slow")},
	}, LoadObserver{})
	if err != nil {
		t.Fatal(err)
	}
	// 100 arrivals; /slow takes 300ms, so about 5 per 300ms get through.
	d := rep.Stats.ErrorsByKind["dropped"]
	if rep.Model != "open" || rep.Iterations != 100 || rep.Requests != 100 || d < 70 || d != rep.Errors {
		t.Errorf("report: model %s, %d iterations, %d requests, %d errors, %v", rep.Model, rep.Iterations, rep.Requests, rep.Errors, rep.Stats.ErrorsByKind)
	}
	// Dropped requests have no latency: the sent ones' p50 is /slow's.
	if rep.Stats.Overall.P50MS < 290 {
		t.Errorf("p50 %v ms, want /slow's 300", rep.Stats.Overall.P50MS)
	}
}

// TestOpenModelRateAndStall is the check of the open model: at a
// fixed 2,000 requests/s for 10 s against a local target the achieved rate
// is within 1 %, and a target that stalls for 1 s shows in the p99 (the
// latency is measured from when each request was due, not from when a free
// sender got to it: no coordinated omission). It sends 20,000 requests: too
// heavy under the race detector on 2 cores, so it is skipped there and with
// -short, and runs in `make test-load` (no -race), which CI runs.
func TestOpenModelRateAndStall(t *testing.T) {
	if raceEnabled || testing.Short() {
		t.Skip("20,000 requests in 10 s: run without -race and -short (make test-load)")
	}
	const (
		rate     = 2000
		duration = 10 * time.Second
	)
	var (
		hits        atomic.Int64
		first, last atomic.Int64
		stallFrom   atomic.Int64 // unix ns; the stall is [from, from+1s)
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now().UnixNano()
		hits.Add(1)
		first.CompareAndSwap(0, now)
		last.Store(now)
		if from := stallFrom.Load(); from > 0 && now >= from && now < from+int64(time.Second) {
			// The target stalls: every request arriving in the stall waits
			// for its end (this is the target's behaviour, not a test sync).
			time.Sleep(time.Duration(from + int64(time.Second) - now))
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	start := time.Now()
	stallFrom.Store(start.Add(4 * time.Second).UnixNano())
	rep, err := RunLoad(context.Background(), LoadConfig{
		Rate: rate, Duration: duration, MaxInFlight: 5000, Requests: []*Prepared{prep(t, srv.URL+"/")},
	}, LoadObserver{})
	if err != nil {
		t.Fatal(err)
	}
	want := int64(rate * duration.Seconds())
	span := time.Duration(last.Load() - first.Load())
	achieved := float64(hits.Load()) / (span.Seconds() + 1.0/rate)
	t.Logf("sent %d, target saw %d over %s: %.1f req/s; engine %.1f req/s; p50 %.2f p99 %.2f max %.2f ms",
		rep.Requests, hits.Load(), span, achieved, rep.RPS, rep.Stats.Overall.P50MS, rep.Stats.Overall.P99MS, rep.Stats.Overall.MaxMS)
	if rep.Requests != want || rep.Errors != 0 || hits.Load() != want {
		t.Fatalf("requests %d, errors %d (%v), target hits %d; want %d, 0, %d", rep.Requests, rep.Errors, rep.Stats.ErrorsByKind, hits.Load(), want, want)
	}
	if d := achieved/rate - 1; d < -0.01 || d > 0.01 {
		t.Errorf("achieved rate %.1f req/s is %.2f %% off %d", achieved, d*100, rate)
	}
	if d := rep.RPS/rate - 1; d < -0.01 || d > 0.01 {
		t.Errorf("engine's rate %.1f req/s is %.2f %% off %d", rep.RPS, d*100, rate)
	}
	// About 2,000 of 20,000 requests were due during the 1 s stall and
	// waited up to 1 s: the p99 sits near 900 ms. Timed from the actual send
	// of a closed loop, only the few in flight would show it.
	if p99 := rep.Stats.Overall.P99MS; p99 < 800 {
		t.Errorf("p99 %.1f ms: the 1 s stall is hidden (coordinated omission)", p99)
	}
	if mx := rep.Stats.Overall.MaxMS; mx < 950 {
		t.Errorf("max %.1f ms, want about 1000 (the stall)", mx)
	}
	if p50 := rep.Stats.Overall.P50MS; p50 > 50 {
		t.Errorf("p50 %.1f ms: the target was only slow for 1 s", p50)
	}
}
