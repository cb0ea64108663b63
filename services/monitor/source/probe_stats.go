package source

import (
	"time"

	"github.com/kis-core/runbook/services/monitor/rules"
	"github.com/kis-core/runbook/services/monitor/stats"
)

// ProbeResult is what one probe request saw.
type ProbeResult struct {
	Latency time.Duration
	// Status is the response's status code, 0 when there was none.
	Status int
	// Err is a transport error (refused, reset, timed out, body cut short).
	Err error
	// TimedOut: the request hit its timeout; its latency is a lower bound.
	TimedOut bool
}

// Failed reports whether the request counts as an error: a transport error
// or a status outside 2xx (fail closed: no answer is a bad answer).
func (r ProbeResult) Failed() bool {
	return r.Err != nil || r.Status < 200 || r.Status > 299
}

// timed reports whether the request's latency says something about the
// target: it answered, or it hit the timeout (the latency is then at least
// the timeout). A request refused at once says nothing about latency.
func (r ProbeResult) timed() bool {
	return r.Status != 0 || r.TimedOut
}

// SummarizeProbe turns one round of probe requests into samples: the
// nearest-rank p95 latency in ms over the requests that answered or timed
// out, and the error rate over all requests. A round of requests that were
// all refused at once has an error rate (1) and no latency.
func SummarizeProbe(results []ProbeResult) []Sample {
	if len(results) == 0 {
		return nil
	}
	var out []Sample
	var latencies []float64
	failed := 0
	for _, r := range results {
		if r.Failed() {
			failed++
		}
		if r.timed() {
			latencies = append(latencies, float64(r.Latency)/float64(time.Millisecond))
		}
	}
	if p95, ok := stats.NearestRank(latencies, 0.95); ok {
		out = append(out, Sample{Metric: rules.MetricP95, Value: p95})
	}
	if rate, ok := stats.Ratio(float64(failed), float64(len(results))); ok {
		out = append(out, Sample{Metric: rules.MetricErrorRate, Value: rate})
	}
	return out
}
