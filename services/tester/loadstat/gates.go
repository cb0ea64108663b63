package loadstat

import (
	"fmt"
	"strings"
)

// The seed's gates (performance-regression-test.sh): ACCEPTABLE_P95=2100 and
// an error rate above 0.01 fails.
const (
	DefaultP95MS     = 2100
	DefaultErrorRate = 0.01
)

// PercentileGate limits one percentile: the Percentile-th (100: the
// maximum) must be at most MaxMS.
type PercentileGate struct {
	Percentile float64
	MaxMS      float64
}

// Gates are the limits a load test must stay within.
type Gates struct {
	P95MS     float64
	ErrorRate float64
	// Percentiles are further latency gates (the plan's gates.percentiles).
	Percentiles []PercentileGate
}

// WithDefaults fills unset (zero or negative) gates with the seed's values.
func (g Gates) WithDefaults() Gates {
	if g.P95MS <= 0 {
		g.P95MS = DefaultP95MS
	}
	if g.ErrorRate <= 0 {
		g.ErrorRate = DefaultErrorRate
	}
	return g
}

// latency lists every latency gate, p95 first.
func (g Gates) latency() []PercentileGate {
	out := []PercentileGate{{Percentile: 95, MaxMS: g.P95MS}}
	for _, p := range g.Percentiles {
		if p.MaxMS > 0 {
			out = append(out, p)
		}
	}
	return out
}

// AboveMS are the latency limits whose exceedances a Recorder must count
// for ClearlyFailed (Config.AboveMS), in the order ClearlyFailed reads them.
func (g Gates) AboveMS() []float64 {
	var out []float64
	for _, p := range g.latency() {
		out = append(out, p.MaxMS)
	}
	return out
}

// Metric names used in a Verdict, as the monitor names them.
const (
	MetricP95       = "api_response_time_p95"
	MetricErrorRate = "error_rate"
	MetricRequests  = "requests"
)

// MetricPercentile names a percentile gate's metric: "api_response_time_p99".
func MetricPercentile(q float64) string {
	if q == 95 {
		return MetricP95
	}
	if q >= 100 {
		return "api_response_time_max"
	}
	return "api_response_time_p" + strings.ReplaceAll(fmt.Sprintf("%g", q), ".", "_")
}

func label(q float64) string {
	if q >= 100 {
		return "max"
	}
	return fmt.Sprintf("P%g", q)
}

// Verdict is the judgement of a load test.
type Verdict struct {
	Pass bool
	// Reason says why it failed ("" when it passed).
	Reason string
	// Metric, Value and Threshold name the first gate broken.
	Metric    string
	Value     float64
	Threshold float64
}

func (v *Verdict) fail(metric, msg string, value, threshold float64) {
	if v.Pass {
		*v = Verdict{Reason: msg, Metric: metric, Value: value, Threshold: threshold}
		return
	}
	v.Reason += "; " + msg
}

// Quantiler gives a latency percentile (0 < q ≤ 100) in milliseconds.
type Quantiler func(q float64) float64

// Judge applies the gates as the seed's script does: it fails when the p95
// exceeds its gate or the error rate exceeds its gate (equal passes). A test
// in which no request completed fails: it proved nothing. The gates are
// used as given: an error-rate gate of 0 allows no error (callers fill
// unset gates with WithDefaults or plan.LoadTest.EffectiveGates).
// Percentile gates are read through q; with q nil only the p95 is judged.
func Judge(s Snapshot, g Gates, q ...Quantiler) Verdict {
	if s.Requests == 0 {
		return Verdict{Reason: "no request completed", Metric: MetricRequests}
	}
	v := Verdict{Pass: true}
	if s.P95MS > g.P95MS {
		v.fail(MetricP95, fmt.Sprintf("P95 response time %.0fms exceeds threshold %.0fms", s.P95MS, g.P95MS), s.P95MS, g.P95MS)
	}
	if len(q) > 0 && q[0] != nil {
		for _, p := range g.Percentiles {
			if got := q[0](p.Percentile); p.MaxMS > 0 && got > p.MaxMS {
				v.fail(MetricPercentile(p.Percentile), fmt.Sprintf("%s response time %.0fms exceeds threshold %.0fms", label(p.Percentile), got, p.MaxMS), got, p.MaxMS)
			}
		}
	}
	if rate := s.ErrorRate(); rate > g.ErrorRate {
		v.fail(MetricErrorRate, fmt.Sprintf("error rate %s exceeds threshold %s (%d of %d requests failed)", pct(rate), pct(g.ErrorRate), s.Errors, s.Requests), rate, g.ErrorRate)
	}
	return v
}

// The early abort. A gate has "clearly failed" when, after at least
// AbortMinRequests requests, the 99.9 % Wilson score interval of the
// fraction that breaks it lies wholly above what the gate allows:
//
//   - error rate: the interval of errors/requests is above the gate (a gate
//     of 0 allows none: the first error after the minimum fails it);
//   - a latency percentile q with limit L: the interval of the fraction of
//     requests slower than L is above 1 − q/100 (the max allows none).
//
// Requests still in flight are not counted. With 30 % errors against a 1 %
// gate that is decided after the first 100 requests; a gate missed by a
// hair is never aborted on: the test runs to its end and Judge decides.
const (
	AbortMinRequests = 100
	abortZ           = 3.29 // two-sided 99.9 %
)

// ClearlyFailed reports whether st shows a gate clearly failed (see
// AbortMinRequests) and says which. st must come from a Recorder made with
// Config.AboveMS = g.AboveMS().
func ClearlyFailed(st Stats, g Gates) (string, bool) {
	n, errs := st.Overall.Requests, st.Overall.Errors
	if n < AbortMinRequests {
		return "", false
	}
	if lo := wilsonLower(errs, n, abortZ); lo > g.ErrorRate || (g.ErrorRate == 0 && errs > 0) {
		return fmt.Sprintf("error rate %s after %d requests (%d failed) is clearly above the %s gate", pct(float64(errs)/float64(n)), n, errs, pct(g.ErrorRate)), true
	}
	for i, p := range g.latency() {
		if i >= len(st.Above) {
			break
		}
		allowed := 1 - p.Percentile/100
		k := st.Above[i]
		if lo := wilsonLower(k, n, abortZ); lo > allowed || (allowed <= 0 && k > 0) {
			return fmt.Sprintf("%s response time gate %.0fms clearly broken: %d of %d requests (%s) slower, %s allowed", label(p.Percentile), p.MaxMS, k, n, pct(float64(k)/float64(n)), pct(allowed)), true
		}
	}
	return "", false
}

func pct(r float64) string { return fmt.Sprintf("%.2f%%", r*100) }
