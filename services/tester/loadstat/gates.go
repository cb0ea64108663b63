package loadstat

import "fmt"

// The seed's gates (performance-regression-test.sh): ACCEPTABLE_P95=2100 and
// an error rate above 0.01 fails.
const (
	DefaultP95MS     = 2100
	DefaultErrorRate = 0.01
)

// Gates are the limits a load test must stay within.
type Gates struct {
	P95MS     float64
	ErrorRate float64
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

// Metric names used in a Verdict, as the monitor names them.
const (
	MetricP95       = "api_response_time_p95"
	MetricErrorRate = "error_rate"
	MetricRequests  = "requests"
)

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

// Judge applies the gates as the seed's script does: it fails when the p95
// exceeds its gate or the error rate exceeds its gate (equal passes). A test
// in which no request completed fails: it proved nothing. The gates are
// used as given: an error-rate gate of 0 allows no error (callers fill
// unset gates with WithDefaults or plan.LoadTest.EffectiveGates).
func Judge(s Snapshot, g Gates) Verdict {
	if s.Requests == 0 {
		return Verdict{Reason: "no request completed", Metric: MetricRequests}
	}
	v := Verdict{Pass: true}
	if s.P95MS > g.P95MS {
		v = Verdict{Reason: fmt.Sprintf("P95 response time %.0fms exceeds threshold %.0fms", s.P95MS, g.P95MS),
			Metric: MetricP95, Value: s.P95MS, Threshold: g.P95MS}
	}
	if rate := s.ErrorRate(); rate > g.ErrorRate {
		msg := fmt.Sprintf("error rate %s exceeds threshold %s (%d of %d requests failed)", pct(rate), pct(g.ErrorRate), s.Errors, s.Requests)
		if v.Pass {
			v = Verdict{Reason: msg, Metric: MetricErrorRate, Value: rate, Threshold: g.ErrorRate}
		} else {
			v.Reason += "; " + msg
		}
	}
	return v
}

func pct(r float64) string { return fmt.Sprintf("%.2f%%", r*100) }
