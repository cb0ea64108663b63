package estimator_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/kis-core/runbook/examples/estimator"
)

func start(t *testing.T, dir string) (*estimator.Server, *httptest.Server) {
	t.Helper()
	s, err := estimator.NewServer(dir, nil)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

func do(t *testing.T, method, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, b
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cp copies a release file over current-release.json the way cp(1) does:
// truncate, then write in place (not atomic).
func cp(t *testing.T, dir, version string) {
	t.Helper()
	b, err := os.ReadFile(estimator.ReleasePath(dir, version))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, estimator.CurrentFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

const seedBody = `{"customerId":"test_customer","projectName":"Smoke Test Project",
  "estimateItems":[{"category":"HARDWARE","itemCode":"TEST_001","quantity":1}]}`

func TestEndpoints(t *testing.T) {
	t.Parallel()
	_, ts := start(t, t.TempDir())

	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/api/v1/health", "", 200},
		{"GET", "/api/v1/estimates", "", 200},
		{"GET", "/api/v1/templates", "", 200},
		{"POST", "/api/v1/estimate", seedBody, 201},
		{"POST", "/api/v1/estimate", `{"customerId":`, 400},
		{"POST", "/api/v1/estimate", `{"customerId":"c","estimateItems":[]}`, 400},
		{"POST", "/api/v1/estimate", `{"customerId":"c","estimateItems":[{"category":"HARDWARE","quantity":0}]}`, 400},
		{"GET", "/api/v1/nope", "", 404},
		{"GET", "/metrics", "", 200},
	} {
		if got, body := do(t, c.method, ts.URL+c.path, c.body); got != c.want {
			t.Errorf("%s %s = %d, want %d (%s)", c.method, c.path, got, c.want, body)
		}
	}

	_, b := do(t, "GET", ts.URL+"/api/v1/health", "")
	var h map[string]string
	if err := json.Unmarshal(b, &h); err != nil || h["status"] != "ok" || h["release"] != estimator.GoodVersion {
		t.Errorf("health = %s (%v), want status ok and release %s", b, err, estimator.GoodVersion)
	}

	code, b := do(t, "POST", ts.URL+"/api/v1/estimate", seedBody)
	var est estimator.Estimate
	if err := json.Unmarshal(b, &est); err != nil || code != 201 {
		t.Fatalf("create = %d %s (%v)", code, b, err)
	}
	if !strings.HasPrefix(est.EstimateID, "EST-") || est.Total != 1200 || est.Release != estimator.GoodVersion {
		t.Errorf("created %+v, want EST-… with total 1200 on %s", est, estimator.GoodVersion)
	}
	_, b = do(t, "GET", ts.URL+"/api/v1/estimates", "")
	var list []estimator.Estimate
	if err := json.Unmarshal(b, &list); err != nil || len(list) == 0 || list[0].EstimateID != est.EstimateID {
		t.Errorf("estimates = %s (%v), want the new estimate first", b, err)
	}

	_, b = do(t, "GET", ts.URL+"/metrics", "")
	for _, want := range []string{
		estimator.MetricLatency + `_bucket{path="/api/v1/health",le="0.005"}`,
		estimator.MetricLatency + `_bucket{path="/api/v1/health",le="10"}`,
		estimator.MetricRequests + `{code="201",path="/api/v1/estimate"}`,
		`estimator_release_info{version="v2.4.0"} 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(string(b), `path="/metrics"`) {
		t.Error("/metrics counts its own scrapes")
	}
}

func TestMetricsExistBeforeTheFirstRequest(t *testing.T) {
	t.Parallel()
	_, ts := start(t, t.TempDir())
	_, b := do(t, "GET", ts.URL+"/metrics", "")
	for _, want := range []string{
		estimator.MetricLatency + `_count{path="/api/v1/estimates"} 0`,
		estimator.MetricRequests + `{code="200",path="/api/v1/estimates"} 0`,
		estimator.MetricErrors + `{path="/api/v1/estimates"} 0`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s before any request", want)
		}
	}
}

func TestStateWrittenAtStartAndKept(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := estimator.EnsureState(dir); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{estimator.GoodVersion, estimator.BadVersion} {
		if _, err := os.Stat(estimator.ReleasePath(dir, v)); err != nil {
			t.Errorf("release %s not written: %v", v, err)
		}
	}
	if r, err := estimator.CurrentRelease(dir); err != nil || r.Version != estimator.GoodVersion {
		t.Fatalf("current = %+v, %v; want the good release", r, err)
	}
	// An existing current release is left alone.
	cp(t, dir, estimator.BadVersion)
	if err := estimator.EnsureState(dir); err != nil {
		t.Fatal(err)
	}
	if r, _ := estimator.CurrentRelease(dir); r.Version != estimator.BadVersion || r.ErrorRate != 0.3 || r.LatencyMS < 300 {
		t.Fatalf("current = %+v after restart, want the bad release kept", r)
	}
}

func TestSwitchingTheFileSwitchesTheRelease(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, ts := start(t, dir)
	release := func() string {
		code, b := do(t, "GET", ts.URL+"/api/v1/health", "")
		var h map[string]string
		_ = json.Unmarshal(b, &h)
		if code != 200 {
			t.Fatalf("health = %d on %s: the health check must stay green", code, h["release"])
		}
		return h["release"]
	}
	if got := release(); got != estimator.GoodVersion {
		t.Fatalf("release = %s, want %s", got, estimator.GoodVersion)
	}
	cp(t, dir, estimator.BadVersion)
	eventually(t, 5*time.Second, "the bad release", func() bool { return release() == estimator.BadVersion })

	// A half-written file keeps the running release; the finished one wins.
	current := filepath.Join(dir, estimator.CurrentFile)
	if err := os.WriteFile(current, []byte(`{"version":`), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := release(); got != estimator.BadVersion {
		t.Fatalf("release = %s after a torn write, want %s kept", got, estimator.BadVersion)
	}
	if err := estimator.Deploy(dir, estimator.GoodVersion); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the good release again", func() bool { return release() == estimator.GoodVersion })
}

func TestBadReleaseFailsAndTheMetricsShowIt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, ts := start(t, dir)

	// Good release first: no 500s.
	for range 5 {
		if code, b := do(t, "GET", ts.URL+"/api/v1/estimates", ""); code != 200 {
			t.Fatalf("good release answered %d: %s", code, b)
		}
	}
	if got := sum(t, s, estimator.MetricErrors); got != 0 {
		t.Fatalf("errors = %v on the good release", got)
	}
	reqBefore := sum(t, s, estimator.MetricRequests)

	cp(t, dir, estimator.BadVersion)
	eventually(t, 5*time.Second, "the bad release", func() bool { return s.Release().Version == estimator.BadVersion })

	const n = 20
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		codes = map[int]int{}
	)
	for range n {
		wg.Go(func() {
			code, _ := do(t, "GET", ts.URL+"/api/v1/estimates", "")
			mu.Lock()
			codes[code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[500] < n*2/10 || codes[500] > n*4/10 || codes[500]+codes[200] != n {
		t.Fatalf("bad release answered %v to %d requests, want about 30 %% 500s", codes, n)
	}
	if code, _ := do(t, "GET", ts.URL+"/api/v1/health", ""); code != 200 {
		t.Fatalf("health = %d on the bad release, want 200", code)
	}

	if got := sum(t, s, estimator.MetricErrors); got != float64(codes[500]) {
		t.Errorf("%s = %v, want %d", estimator.MetricErrors, got, codes[500])
	}
	if got := sum(t, s, estimator.MetricRequests) - reqBefore; got != n+1 {
		t.Errorf("%s moved by %v, want %d", estimator.MetricRequests, got, n+1)
	}
	h := histogram(t, s, "/api/v1/estimates")
	if h.GetSampleCount() != 5+n {
		t.Errorf("histogram count = %d, want %d", h.GetSampleCount(), 5+n)
	}
	slow := uint64(0) // observations above 250 ms: every bad-release request
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == 0.25 {
			slow = h.GetSampleCount() - b.GetCumulativeCount()
		}
	}
	if slow != n {
		t.Errorf("%d observations above 250 ms, want %d (the bad release's ~400 ms)", slow, n)
	}
}

func families(t *testing.T, s *estimator.Server) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// sum adds up every series of a counter.
func sum(t *testing.T, s *estimator.Server, name string) float64 {
	t.Helper()
	var total float64
	if mf := families(t, s)[name]; mf != nil {
		for _, m := range mf.GetMetric() {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

func histogram(t *testing.T, s *estimator.Server, path string) *dto.Histogram {
	t.Helper()
	for _, m := range families(t, s)[estimator.MetricLatency].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "path" && l.GetValue() == path {
				return m.GetHistogram()
			}
		}
	}
	t.Fatalf("no histogram series for %s", path)
	return nil
}
