// Package loadstat is the arithmetic of a load test: a concurrent recorder of
// request latencies (an HDR histogram, as k6 and wrk2 use) and the judgement
// of the result against the plan's gates. It is pure: no network, no clock.
package loadstat

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram range and precision: 1µs to 1h at 3 significant digits, i.e.
// a quantile is within 0.1 % of the true value.
const (
	minMicros   = 1
	maxMicros   = int64(time.Hour / time.Microsecond)
	significant = 3
)

// Recorder collects every request of a load test. It is safe for concurrent
// use by all virtual users.
type Recorder struct {
	mu       sync.Mutex
	hist     *hdrhistogram.Histogram
	requests int64
	errors   int64
	sum      time.Duration
	max      time.Duration
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{hist: hdrhistogram.New(minMicros, maxMicros, significant)}
}

// Record adds one request's latency; failed marks it an error (non-2xx or
// transport failure).
func (r *Recorder) Record(d time.Duration, failed bool) {
	us := d.Microseconds()
	us = min(max(us, minMicros), maxMicros)
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.hist.RecordValue(us) // in range by construction
	r.requests++
	if failed {
		r.errors++
	}
	r.sum += d
	r.max = max(r.max, d)
}

// Snapshot is the state of a recorder at one moment.
type Snapshot struct {
	Requests int64
	Errors   int64
	AvgMS    float64
	P95MS    float64
	MaxMS    float64
}

// ErrorRate is errors / requests (0 when there were no requests).
func (s Snapshot) ErrorRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Requests)
}

// Snapshot reads the recorder.
func (r *Recorder) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Snapshot{Requests: r.requests, Errors: r.errors, MaxMS: ms(r.max)}
	if r.requests > 0 {
		s.AvgMS = ms(r.sum) / float64(r.requests)
		s.P95MS = float64(r.hist.ValueAtQuantile(95)) / 1000
		// The histogram reports the upper edge of a bucket; never above the
		// exact maximum.
		s.P95MS = min(s.P95MS, s.MaxMS)
	}
	return s
}

// Quantile returns the q-th percentile (0 < q ≤ 100) in milliseconds.
func (r *Recorder) Quantile(q float64) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.requests == 0 {
		return 0
	}
	return min(float64(r.hist.ValueAtQuantile(q))/1000, ms(r.max))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
