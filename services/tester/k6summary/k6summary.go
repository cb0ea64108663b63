// Package k6summary writes a load test's result in the shape of the data
// object k6 hands to handleSummary (and writes with JSON.stringify(data), as
// the seed's performance-regression-test.sh does): {"root_group", "options",
// "state", "metrics"}, each metric {"type", "contains", "values",
// "thresholds"}. Scripts and dashboards written against k6's file — the
// seed's own jq lines among them — read ours unchanged.
//
// Differences from k6, on purpose:
//
//   - http_req_duration's values carry "p95" besides k6's "p(95)". The seed
//     reads .metrics.http_req_duration.values.p95, a key k6 never writes
//     (under k6 that line prints "null" and the gate compares nothing); we
//     write both so the seed's line gets the number it meant.
//   - Only the metrics a runbook load test measures are written: vus,
//     vus_max, iterations, http_reqs, http_req_duration, http_req_failed and,
//     when there are checks, checks. No data_sent, http_req_blocked, ….
//
// As with k6, a metric nothing was recorded for is absent: with no request
// completed there is no http_req_duration, and jq prints null.
//
// Numbers are written as Go writes float64s; jq 1.6 prints values below
// 1e-4 in exponent form (an error rate of 1 in 20 000 prints "5e-05"),
// which the seed's `bc` comparisons cannot parse — as with k6's own file.
package k6summary

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/tester/httprun"
	"github.com/kis-core/runbook/services/tester/loadstat"
)

// Trend is a latency distribution in milliseconds. A NaN field is unknown
// and left out of the summary.
type Trend struct {
	Avg, Min, Med, Max, P90, P95 float64
}

// Check is a named pass/fail count, k6's check().
type Check struct {
	Name          string
	Passes, Fails int64
}

// StatusCheck is the check every runbook load request makes: a 2xx status
// without a transport error (the load engine's definition of an error).
func StatusCheck(requests, errors int64) Check {
	return Check{Name: "status is 2xx", Passes: requests - errors, Fails: errors}
}

// Load is what a summary is built from.
type Load struct {
	VUs      int
	Duration time.Duration
	Requests int64
	// Errors counts failed requests (non-2xx or transport failure).
	Errors int64
	// Iterations counts passes through the plan's request list; negative:
	// unknown, and the iterations metric is left out.
	Iterations int64
	Latency    Trend
	// ByName are the latencies of each named request, written as the
	// sub-metric http_req_duration{name:<name>}.
	ByName map[string]Trend
	Checks []Check
	// Gates, when set, are written as k6 thresholds with their outcome:
	// "p(95)<=2100" on http_req_duration and "rate<=0.01" on
	// http_req_failed (loadstat.Judge lets a value equal to its gate pass).
	Gates *loadstat.Gates
}

// FromReport builds the Load of a finished load test from the engine's
// report: its overall latencies and, per request name, a
// http_req_duration{name:<name>} sub-metric as k6 writes for tagged
// requests.
func FromReport(rep httprun.LoadReport, g loadstat.Gates) Load {
	l := Load{
		VUs: rep.VUs, Duration: rep.Elapsed, Requests: rep.Requests, Errors: rep.Errors,
		Iterations: rep.Iterations, Latency: TrendOfStats(rep.Stats),
		Checks: []Check{StatusCheck(rep.Requests, rep.Errors)}, Gates: &g,
	}
	for _, n := range rep.Stats.ByName {
		if n.Name != "" && n.Requests > 0 {
			if l.ByName == nil {
				l.ByName = map[string]Trend{}
			}
			l.ByName[n.Name] = trendOf(n)
		}
	}
	return l
}

// TrendOf reads a recorder's latency distribution. Quantiles come from its
// HDR histogram (within 0.1 %), the average, minimum and maximum are exact.
func TrendOf(rec *loadstat.Recorder) Trend { return TrendOfStats(rec.Stats()) }

// TrendOfStats is TrendOf of a recorder's merged statistics.
func TrendOfStats(st loadstat.Stats) Trend {
	if st.Overall.Requests == 0 {
		return Trend{}
	}
	return trendOf(st.Overall)
}

func trendOf(l loadstat.Latency) Trend {
	return Trend{Avg: l.AvgMS, Min: l.MinMS, Med: l.P50MS, Max: l.MaxMS, P90: l.P90MS, P95: l.P95MS}
}

// FromLoadResult builds a Load from the event the tester publishes. The
// event has no minimum, median, p90 nor iteration count: those are left out.
func FromLoadResult(r *runbookv1.LoadResult) Load {
	nan := math.NaN()
	return Load{
		VUs: int(r.GetVus()), Duration: time.Duration(r.GetDurationMs()) * time.Millisecond,
		Requests: r.GetRequests(), Errors: r.GetErrors(), Iterations: -1,
		Latency: Trend{Avg: r.GetAvgMs(), P95: r.GetP95Ms(), Max: r.GetMaxMs(), Min: nan, Med: nan, P90: nan},
		Checks:  []Check{StatusCheck(r.GetRequests(), r.GetErrors())},
		Gates:   &loadstat.Gates{P95MS: r.GetGateP95Ms(), ErrorRate: r.GetGateErrorRate()},
	}
}

// Summary is k6's handleSummary data object.
type Summary struct {
	RootGroup Group             `json:"root_group"`
	Options   Options           `json:"options"`
	State     State             `json:"state"`
	Metrics   map[string]Metric `json:"metrics"`
}

// Group is a k6 group; a runbook load test has only the root group.
type Group struct {
	Name   string       `json:"name"`
	Path   string       `json:"path"`
	ID     string       `json:"id"`
	Groups []Group      `json:"groups"`
	Checks []GroupCheck `json:"checks"`
}

// GroupCheck is one check of a group.
type GroupCheck struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	ID     string `json:"id"`
	Passes int64  `json:"passes"`
	Fails  int64  `json:"fails"`
}

// Options are the summary options k6 reports.
type Options struct {
	SummaryTrendStats []string `json:"summaryTrendStats"`
	SummaryTimeUnit   string   `json:"summaryTimeUnit"`
	NoColor           bool     `json:"noColor"`
}

// State is the test run's state.
type State struct {
	IsStdOutTTY       bool    `json:"isStdOutTTY"`
	IsStdErrTTY       bool    `json:"isStdErrTTY"`
	TestRunDurationMs float64 `json:"testRunDurationMs"`
}

// Metric is one metric: type trend, rate, counter or gauge; contains time
// or default.
type Metric struct {
	Type       string               `json:"type"`
	Contains   string               `json:"contains"`
	Values     map[string]float64   `json:"values"`
	Thresholds map[string]Threshold `json:"thresholds,omitempty"`
}

// Threshold is a threshold's outcome.
type Threshold struct {
	OK bool `json:"ok"`
}

// k6's default summaryTrendStats.
var trendStats = []string{"avg", "min", "med", "max", "p(90)", "p(95)"}

// Build makes the summary of a load test. It fails on counts that cannot
// be (negative, more errors than requests), on negative or infinite
// latencies, unnamed checks and negative gates, naming the field.
func Build(l Load) (Summary, error) {
	if err := l.validate(); err != nil {
		return Summary{}, err
	}
	secs := l.Duration.Seconds()
	perSec := func(n int64) float64 {
		if secs <= 0 {
			return 0
		}
		return float64(n) / secs
	}
	vus := float64(l.VUs)
	m := map[string]Metric{
		"vus":       {Type: "gauge", Contains: "default", Values: map[string]float64{"value": vus, "min": vus, "max": vus}},
		"vus_max":   {Type: "gauge", Contains: "default", Values: map[string]float64{"value": vus, "min": vus, "max": vus}},
		"http_reqs": {Type: "counter", Contains: "default", Values: map[string]float64{"count": float64(l.Requests), "rate": perSec(l.Requests)}},
	}
	if l.Iterations >= 0 {
		m["iterations"] = Metric{Type: "counter", Contains: "default",
			Values: map[string]float64{"count": float64(l.Iterations), "rate": perSec(l.Iterations)}}
	}
	if l.Requests > 0 {
		t := l.Latency
		v := trendValues(t)
		dur := Metric{Type: "trend", Contains: "time", Values: v}
		rate := float64(l.Errors) / float64(l.Requests)
		// A Rate counts non-zero samples as passes: for http_req_failed a
		// failed request is a "pass" — k6's naming, kept.
		failed := Metric{Type: "rate", Contains: "default",
			Values: map[string]float64{"rate": rate, "passes": float64(l.Errors), "fails": float64(l.Requests - l.Errors)}}
		if g := l.Gates; g != nil {
			if _, ok := v["p(95)"]; ok {
				dur.Thresholds = map[string]Threshold{fmt.Sprintf("p(95)<=%g", g.P95MS): {OK: t.P95 <= g.P95MS}}
			}
			failed.Thresholds = map[string]Threshold{fmt.Sprintf("rate<=%g", g.ErrorRate): {OK: rate <= g.ErrorRate}}
		}
		m["http_req_duration"], m["http_req_failed"] = dur, failed
		for name, t := range l.ByName {
			m["http_req_duration{name:"+name+"}"] = Metric{Type: "trend", Contains: "time", Values: trendValues(t)}
		}
	}

	root := Group{ID: id(""), Groups: []Group{}, Checks: []GroupCheck{}}
	var passes, fails int64
	for _, c := range l.Checks {
		path := "::" + c.Name // k6: group path + "::" + check name
		root.Checks = append(root.Checks, GroupCheck{Name: c.Name, Path: path, ID: id(path), Passes: c.Passes, Fails: c.Fails})
		passes += c.Passes
		fails += c.Fails
	}
	if passes+fails > 0 {
		m["checks"] = Metric{Type: "rate", Contains: "default",
			Values: map[string]float64{"rate": float64(passes) / float64(passes+fails), "passes": float64(passes), "fails": float64(fails)}}
	}
	return Summary{
		RootGroup: root,
		Options:   Options{SummaryTrendStats: trendStats},
		State:     State{TestRunDurationMs: float64(l.Duration) / float64(time.Millisecond)},
		Metrics:   m,
	}, nil
}

// trendValues are a trend's values, k6's names and the seed's "p95"; NaN
// (unknown) ones are left out.
func trendValues(t Trend) map[string]float64 {
	v := map[string]float64{}
	for k, x := range map[string]float64{"avg": t.Avg, "min": t.Min, "med": t.Med, "max": t.Max, "p(90)": t.P90, "p(95)": t.P95, "p95": t.P95} {
		if !math.IsNaN(x) {
			v[k] = x
		}
	}
	return v
}

// JSON is the summary as k6's JSON.stringify(data) writes it: compact, and
// "<" in threshold names left as it is.
func (s Summary) JSON() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("k6summary: encode: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// id is k6's identifier of a group or check: the hex MD5 of its path.
func id(path string) string {
	h := md5.Sum([]byte(path))
	return hex.EncodeToString(h[:])
}

func (l Load) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("k6summary: "+format, a...)) }
	if l.VUs < 0 {
		bad("vus %d is negative", l.VUs)
	}
	if l.Duration < 0 {
		bad("duration %s is negative", l.Duration)
	}
	if l.Requests < 0 {
		bad("requests %d is negative", l.Requests)
	}
	if l.Errors < 0 || l.Errors > max(l.Requests, 0) {
		bad("errors %d not in [0, requests %d]", l.Errors, l.Requests)
	}
	if l.Requests > 0 {
		t := l.Latency
		for _, f := range []struct {
			name string
			v    float64
		}{{"avg", t.Avg}, {"min", t.Min}, {"med", t.Med}, {"max", t.Max}, {"p90", t.P90}, {"p95", t.P95}} {
			if f.v < 0 || math.IsInf(f.v, 0) {
				bad("latency %s %v ms must be finite and not negative", f.name, f.v)
			}
		}
	}
	for i, c := range l.Checks {
		switch {
		case c.Name == "":
			bad("checks[%d]: name is empty", i)
		case c.Passes < 0 || c.Fails < 0:
			bad("checks[%d] %q: passes %d and fails %d must not be negative", i, c.Name, c.Passes, c.Fails)
		}
	}
	if g := l.Gates; g != nil && (g.P95MS < 0 || g.ErrorRate < 0 || math.IsNaN(g.P95MS) || math.IsNaN(g.ErrorRate)) {
		bad("gates p95 %v ms and error rate %v must not be negative", g.P95MS, g.ErrorRate)
	}
	return errors.Join(errs...)
}
