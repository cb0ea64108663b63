package k6summary

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/tester/httprun"
	"github.com/kis-core/runbook/services/tester/loadstat"
)

// seedAnalysis is the seed's performance-regression-test.sh (09_Runbook.md,
// "2. Analyzing results"), its jq lines verbatim, then the values printed one
// a line. RESULTS_FILE comes from the environment instead of the seed's
// fixed /tmp/k6-results.json, so tests can run in parallel.
const seedAnalysis = `
    p95_response_time=$(jq -r '.metrics.http_req_duration.values.p95' "$RESULTS_FILE")
    avg_response_time=$(jq -r '.metrics.http_req_duration.values.avg' "$RESULTS_FILE")
    error_rate=$(jq -r '.metrics.http_req_failed.values.rate' "$RESULTS_FILE")
printf '%s\n' "$p95_response_time" "$avg_response_time" "$error_rate"
`

// The seed's gate on p95, verbatim but for the variables' source.
const seedP95Gate = `ACCEPTABLE_P95=2100
p95_response_time=$(jq -r '.metrics.http_req_duration.values.p95' "$RESULTS_FILE")
if (( $(echo "$p95_response_time > $ACCEPTABLE_P95" | bc -l) )); then echo REGRESSION; else echo PASSED; fi
`

// needJQ checks that jq is installed. Outside CI a missing jq skips the
// test (loudly); under CI=true it fails it.
func needJQ(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("jq"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("jq not found under CI=true (.ci/run installs it): %v", err)
		}
		t.Skipf("SKIPPED: jq not found (%v): the seed's jq lines were NOT checked; apt-get install -y jq", err)
	}
}

// runSeed writes the summary to a file and runs script on it with bash.
func runSeed(t *testing.T, s Summary, script string) []string {
	t.Helper()
	b, err := s.JSON()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "k6-results.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "RESULTS_FILE="+file)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("seed script: %v\n%s", err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// seedLoad is the seed's load test (50 VUs, 300 s) with realistic numbers.
func seedLoad() Load {
	return Load{
		VUs: 50, Duration: 300 * time.Second, Requests: 15000, Errors: 30, Iterations: 7500,
		Latency: Trend{Avg: 180.5, Min: 12.25, Med: 150.75, Max: 3900, P90: 1800, P95: 2050.25},
		Checks:  []Check{StatusCheck(15000, 30)},
		Gates:   &loadstat.Gates{P95MS: 2100, ErrorRate: 0.01},
	}
}

func TestSeedJQLinesReadTheSummary(t *testing.T) {
	t.Parallel()
	needJQ(t)
	over := seedLoad()
	over.Latency.P95 = 2400.5
	over.Errors = 300
	tests := []struct {
		name string
		load Load
		want []string // p95, avg, error rate as jq -r prints them
	}{
		{"seed load, passing", seedLoad(), []string{"2050.25", "180.5", "0.002"}},
		{"p95 and errors over the gates", over, []string{"2400.5", "180.5", "0.02"}},
		// As under k6: no request, no http_req_* metrics, jq prints null.
		{"no request completed", Load{VUs: 5, Duration: time.Second}, []string{"null", "null", "null"}},
		{"from the LoadResult event", FromLoadResult(&runbookv1.LoadResult{Vus: 10, DurationMs: 60000, Requests: 4000,
			Errors: 1, AvgMs: 95.12, P95Ms: 310.4, MaxMs: 900, GateP95Ms: 2100, GateErrorRate: 0.01}),
			[]string{"310.4", "95.12", "0.00025"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := Build(tt.load)
			if err != nil {
				t.Fatal(err)
			}
			got := runSeed(t, s, seedAnalysis)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("seed's jq lines printed %q, want %q", got, tt.want)
			}
		})
	}
}

// The seed's bc comparison reaches the same verdict as loadstat.Judge.
func TestSeedP95GateAgreesWithJudge(t *testing.T) {
	t.Parallel()
	needJQ(t)
	if _, err := exec.LookPath("bc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("bc not found under CI=true (.ci/run installs it): %v", err)
		}
		t.Skipf("SKIPPED: bc not found (%v): the seed's p95 gate was NOT run", err)
	}
	for _, p95 := range []float64{2050.25, 2100, 2100.01} {
		l := seedLoad()
		l.Latency.P95 = p95
		s, err := Build(l)
		if err != nil {
			t.Fatal(err)
		}
		want := "PASSED"
		if !loadstat.Judge(loadstat.Snapshot{Requests: l.Requests, Errors: l.Errors, P95MS: p95}, *l.Gates).Pass {
			want = "REGRESSION"
		}
		if got := runSeed(t, s, seedP95Gate); len(got) != 1 || got[0] != want {
			t.Errorf("p95 %v: seed gate said %q, Judge %s", p95, got, want)
		}
		if ok := s.Metrics["http_req_duration"].Thresholds["p(95)<=2100"].OK; ok != (want == "PASSED") {
			t.Errorf("p95 %v: threshold ok=%v, Judge %s", p95, ok, want)
		}
	}
}

// The whole document for a small load, as k6 would write it.
func TestBuildShape(t *testing.T) {
	t.Parallel()
	s, err := Build(Load{
		VUs: 2, Duration: 2 * time.Second, Requests: 4, Errors: 1, Iterations: 2,
		Latency: Trend{Avg: 10, Min: 5, Med: 8, Max: 20, P90: 18, P95: 19},
		Checks:  []Check{StatusCheck(4, 1)},
		Gates:   &loadstat.Gates{P95MS: 2100, ErrorRate: 0.01},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.JSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"root_group":{"name":"","path":"","id":"d41d8cd98f00b204e9800998ecf8427e","groups":[],` +
		`"checks":[{"name":"status is 2xx","path":"::status is 2xx","id":"` + id("::status is 2xx") + `","passes":3,"fails":1}]},` +
		`"options":{"summaryTrendStats":["avg","min","med","max","p(90)","p(95)"],"summaryTimeUnit":"","noColor":false},` +
		`"state":{"isStdOutTTY":false,"isStdErrTTY":false,"testRunDurationMs":2000},` +
		`"metrics":{` +
		`"checks":{"type":"rate","contains":"default","values":{"fails":1,"passes":3,"rate":0.75}},` +
		`"http_req_duration":{"type":"trend","contains":"time","values":{"avg":10,"max":20,"med":8,"min":5,"p(90)":18,"p(95)":19,"p95":19},"thresholds":{"p(95)<=2100":{"ok":true}}},` +
		`"http_req_failed":{"type":"rate","contains":"default","values":{"fails":3,"passes":1,"rate":0.25},"thresholds":{"rate<=0.01":{"ok":false}}},` +
		`"http_reqs":{"type":"counter","contains":"default","values":{"count":4,"rate":2}},` +
		`"iterations":{"type":"counter","contains":"default","values":{"count":2,"rate":1}},` +
		`"vus":{"type":"gauge","contains":"default","values":{"max":2,"min":2,"value":2}},` +
		`"vus_max":{"type":"gauge","contains":"default","values":{"max":2,"min":2,"value":2}}}}`
	if string(got) != want {
		t.Errorf("JSON =\n%s\nwant\n%s", got, want)
	}
	// k6's root group id is the MD5 of the empty path.
	if id("") != "d41d8cd98f00b204e9800998ecf8427e" {
		t.Errorf("id(\"\") = %s", id(""))
	}
}

func TestFromLoadResultLeavesOutWhatTheEventLacks(t *testing.T) {
	t.Parallel()
	s, err := Build(FromLoadResult(&runbookv1.LoadResult{Vus: 3, DurationMs: 1500, Requests: 30, AvgMs: 4, P95Ms: 9, MaxMs: 12, GateP95Ms: 5, GateErrorRate: 0.01}))
	if err != nil {
		t.Fatal(err)
	}
	v := s.Metrics["http_req_duration"].Values
	for _, k := range []string{"min", "med", "p(90)"} {
		if _, ok := v[k]; ok {
			t.Errorf("values[%q] = %v, want it left out (the event does not carry it)", k, v[k])
		}
	}
	if v["p(95)"] != 9 || v["p95"] != 9 || v["avg"] != 4 || v["max"] != 12 {
		t.Errorf("values = %v", v)
	}
	if _, ok := s.Metrics["iterations"]; ok {
		t.Error("iterations written though the event has no iteration count")
	}
	if th := s.Metrics["http_req_duration"].Thresholds; !(len(th) == 1 && !th["p(95)<=5"].OK) {
		t.Errorf("thresholds = %v, want p(95)<=5 failed", th)
	}
	if s.State.TestRunDurationMs != 1500 || s.Metrics["http_reqs"].Values["rate"] != 20 {
		t.Errorf("duration %v ms, http_reqs %v", s.State.TestRunDurationMs, s.Metrics["http_reqs"].Values)
	}
}

func TestFromReportReadsTheRecorder(t *testing.T) {
	t.Parallel()
	rec := loadstat.NewRecorder()
	for i := 1; i <= 100; i++ {
		rec.Record(time.Duration(i)*time.Millisecond, i%25 == 0)
	}
	rep := httprun.LoadReport{Snapshot: rec.Snapshot(), Stats: rec.Stats(), VUs: 4, Elapsed: 10 * time.Second, Iterations: 50}
	l := FromReport(rep, loadstat.Gates{P95MS: 2100, ErrorRate: 0.01})
	near := func(name string, got, want float64) {
		if math.Abs(got-want) > want*0.002 {
			t.Errorf("%s = %v, want %v (±0.2 %%)", name, got, want)
		}
	}
	near("min", l.Latency.Min, 1)
	near("med", l.Latency.Med, 50)
	near("p90", l.Latency.P90, 90)
	near("p95", l.Latency.P95, 95)
	near("max", l.Latency.Max, 100)
	near("avg", l.Latency.Avg, 50.5)
	if l.Requests != 100 || l.Errors != 4 || l.Iterations != 50 || l.VUs != 4 {
		t.Errorf("counts = %+v", l)
	}
	s, err := Build(l)
	if err != nil {
		t.Fatal(err)
	}
	c := s.Metrics["checks"].Values
	if c["passes"] != 96 || c["fails"] != 4 || c["rate"] != 0.96 {
		t.Errorf("checks = %v", c)
	}
	if !s.Metrics["http_req_duration"].Thresholds["p(95)<=2100"].OK || s.Metrics["http_req_failed"].Thresholds["rate<=0.01"].OK {
		t.Errorf("thresholds: duration %v, failed %v", s.Metrics["http_req_duration"].Thresholds, s.Metrics["http_req_failed"].Thresholds)
	}
	// The empty recorder has no trend.
	if tr := TrendOf(loadstat.NewRecorder()); tr != (Trend{}) {
		t.Errorf("TrendOf(empty) = %+v", tr)
	}
}

func TestBuildRejectsBadInput(t *testing.T) {
	t.Parallel()
	ok := Trend{Avg: 1, Min: 1, Med: 1, Max: 1, P90: 1, P95: 1}
	tests := []struct {
		name string
		l    Load
		want string
	}{
		{"negative vus", Load{VUs: -1}, "vus -1 is negative"},
		{"negative duration", Load{Duration: -time.Second}, "duration -1s is negative"},
		{"negative requests", Load{Requests: -3}, "requests -3 is negative"},
		{"more errors than requests", Load{Requests: 2, Errors: 3, Latency: ok}, "errors 3 not in [0, requests 2]"},
		{"negative latency", Load{Requests: 2, Latency: Trend{Avg: 1, Min: -1, Med: 1, Max: 1, P90: 1, P95: 1}}, "latency min -1 ms"},
		{"infinite latency", Load{Requests: 2, Latency: Trend{Avg: 1, Min: 1, Med: 1, Max: math.Inf(1), P90: 1, P95: 1}}, "latency max +Inf ms"},
		{"unnamed check", Load{Checks: []Check{{Passes: 1}}}, "checks[0]: name is empty"},
		{"negative check", Load{Checks: []Check{{Name: "x", Fails: -1}}}, `checks[0] "x": passes 0 and fails -1`},
		{"negative gate", Load{Gates: &loadstat.Gates{P95MS: -1}}, "gates p95 -1 ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Build(tt.l)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// The summary decodes as the generic document k6 users script against.
func TestJSONRoundTrip(t *testing.T) {
	t.Parallel()
	s, err := Build(seedLoad())
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Metrics map[string]struct {
			Type   string             `json:"type"`
			Values map[string]float64 `json:"values"`
		} `json:"metrics"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if d := doc.Metrics["http_req_duration"]; d.Type != "trend" || d.Values["p(95)"] != 2050.25 || d.Values["p95"] != 2050.25 {
		t.Errorf("http_req_duration = %+v", d)
	}
	if f := doc.Metrics["http_req_failed"]; f.Type != "rate" || f.Values["rate"] != 0.002 || f.Values["passes"] != 30 || f.Values["fails"] != 14970 {
		t.Errorf("http_req_failed = %+v", f)
	}
	if r := doc.Metrics["http_reqs"]; r.Values["count"] != 15000 || r.Values["rate"] != 50 {
		t.Errorf("http_reqs = %+v", r)
	}
}
