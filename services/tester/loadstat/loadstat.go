// Package loadstat is the arithmetic of a load test: a concurrent recorder of
// request latencies (HDR histograms, as k6 and wrk2 use, overall and per
// request name), errors by kind, a bounded uniform sample of latencies for
// the regression judgement, and the judgement of the result against the
// plan's gates. It is pure: no network, no clock.
package loadstat

import (
	"math"
	"math/rand/v2"
	"slices"
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

// DefaultReservoir is how many latencies a recorder keeps as a uniform
// sample of the whole run (Samples).
const DefaultReservoir = 2000

// Kind is what became of one request.
type Kind uint8

// The kinds. Every kind but KindOK is an error.
const (
	KindOK Kind = iota
	Kind1xx
	Kind3xx
	Kind4xx
	Kind5xx
	// KindTimeout: the request timed out.
	KindTimeout
	// KindConnection: no answer (connection refused, reset, DNS, …).
	KindConnection
	// KindDropped: the open model's arrival found max_in_flight iterations
	// in flight and was not sent.
	KindDropped
	// KindOther: anything else (a malformed answer, …).
	KindOther
	numKinds
)

var kindNames = [numKinds]string{"ok", "1xx", "3xx", "4xx", "5xx", "timeout", "connection", "dropped", "other"}

// String is the kind's name in LoadResult.errors_by_kind.
func (k Kind) String() string {
	if k >= numKinds {
		return "other"
	}
	return kindNames[k]
}

// StatusKind classifies an HTTP status: 2xx is KindOK, others by class.
func StatusKind(code int) Kind {
	switch {
	case code >= 200 && code <= 299:
		return KindOK
	case code >= 100 && code <= 199:
		return Kind1xx
	case code >= 300 && code <= 399:
		return Kind3xx
	case code >= 400 && code <= 499:
		return Kind4xx
	case code >= 500 && code <= 599:
		return Kind5xx
	}
	return KindOther
}

// Config shapes a Recorder.
type Config struct {
	// Names are the request names (Add's name index); none: one unnamed.
	Names []string
	// Shards spread the recording over this many locks (default 1): give
	// each sender a shard of its own, modulo Shards.
	Shards int
	// AboveMS are latency limits (ms) whose exceedances are counted
	// exactly (Above), for the early abort of a percentile gate.
	AboveMS []float64
	// Reservoir is the size of the uniform latency sample (default
	// DefaultReservoir).
	Reservoir int
}

// Recorder collects every request of a load test. It is safe for concurrent
// use.
type Recorder struct {
	names   []string
	aboveUS []int64
	shards  []*shard
	size    int
}

type series struct {
	hist     *hdrhistogram.Histogram
	requests int64
	errors   int64
	timed    int64 // requests with a latency (not dropped)
	sum      time.Duration
	min, max time.Duration
}

func newSeries() *series {
	return &series{hist: hdrhistogram.New(minMicros, maxMicros, significant)}
}

func (s *series) add(d time.Duration, failed bool) {
	us := min(max(d.Microseconds(), minMicros), maxMicros)
	_ = s.hist.RecordValue(us) // in range by construction
	if s.timed == 0 || d < s.min {
		s.min = d
	}
	s.timed++
	s.requests++
	if failed {
		s.errors++
	}
	s.sum += d
	s.max = max(s.max, d)
}

func (s *series) merge(o *series) {
	if o.requests == 0 {
		return
	}
	s.hist.Merge(o.hist)
	if o.timed > 0 && (s.timed == 0 || o.min < s.min) {
		s.min = o.min
	}
	s.timed += o.timed
	s.requests += o.requests
	s.errors += o.errors
	s.sum += o.sum
	s.max = max(s.max, o.max)
}

type shard struct {
	mu      sync.Mutex
	overall *series
	byName  []*series
	kinds   [numKinds]int64
	above   []int64
	// Algorithm R: seen counts every latency offered to the reservoir.
	sample []float64
	seen   int64
	rng    *rand.Rand
	_      [64]byte // keep shards on their own cache lines
}

// NewRecorder returns an empty single-shard recorder of unnamed requests.
func NewRecorder() *Recorder { return New(Config{}) }

// New returns an empty recorder shaped by c.
func New(c Config) *Recorder {
	if len(c.Names) == 0 {
		c.Names = []string{""}
	}
	c.Shards = max(c.Shards, 1)
	if c.Reservoir <= 0 {
		c.Reservoir = DefaultReservoir
	}
	r := &Recorder{names: slices.Clone(c.Names), size: c.Reservoir}
	for _, ms := range c.AboveMS {
		r.aboveUS = append(r.aboveUS, int64(ms*1000))
	}
	for i := range c.Shards {
		s := &shard{overall: newSeries(), above: make([]int64, len(c.AboveMS)),
			rng: rand.New(rand.NewPCG(uint64(i)+1, 0x9e3779b97f4a7c15))}
		for range c.Names {
			s.byName = append(s.byName, newSeries())
		}
		r.shards = append(r.shards, s)
	}
	return r
}

// Names are the request names the recorder was made with.
func (r *Recorder) Names() []string { return slices.Clone(r.names) }

// Record adds one request's latency to shard 0 under the first name;
// failed marks it an error of KindOther (non-2xx or transport failure).
func (r *Recorder) Record(d time.Duration, failed bool) {
	k := KindOK
	if failed {
		k = KindOther
	}
	r.Add(0, 0, d, k)
}

// Add records one request: its shard (any int, taken modulo the shards),
// its name's index, its latency and what became of it.
func (r *Recorder) Add(shardHint, name int, d time.Duration, k Kind) {
	s := r.shards[uint(shardHint)%uint(len(r.shards))]
	failed := k != KindOK
	us := d.Microseconds()
	s.mu.Lock()
	s.overall.add(d, failed)
	if name >= 0 && name < len(s.byName) {
		s.byName[name].add(d, failed)
	}
	s.kinds[min(k, numKinds-1)]++
	for i, lim := range r.aboveUS {
		if us > lim {
			s.above[i]++
		}
	}
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case len(s.sample) < r.size:
		s.sample = append(s.sample, ms)
	default:
		if j := s.rng.Int64N(s.seen + 1); j < int64(r.size) {
			s.sample[j] = ms
		}
	}
	s.seen++
	s.mu.Unlock()
}

// Drop records a request that was never sent (the open model's arrival
// beyond max_in_flight): a request and an error of KindDropped, with no
// latency.
func (r *Recorder) Drop(shardHint, name int) {
	s := r.shards[uint(shardHint)%uint(len(r.shards))]
	s.mu.Lock()
	s.overall.requests++
	s.overall.errors++
	if name >= 0 && name < len(s.byName) {
		s.byName[name].requests++
		s.byName[name].errors++
	}
	s.kinds[KindDropped]++
	s.mu.Unlock()
}

// Latency describes one series of requests, in milliseconds.
type Latency struct {
	Name     string
	Requests int64
	Errors   int64
	AvgMS    float64
	MinMS    float64
	P50MS    float64
	P90MS    float64
	P95MS    float64
	P99MS    float64
	MaxMS    float64
}

// Snapshot is the state of a recorder at one moment.
type Snapshot struct {
	Requests int64
	Errors   int64
	AvgMS    float64
	P95MS    float64
	MaxMS    float64
	// P99MS is the overall 99th percentile.
	P99MS float64
}

// ErrorRate is errors / requests (0 when there were no requests).
func (s Snapshot) ErrorRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Requests)
}

// Stats is everything a recorder knows, merged over its shards.
type Stats struct {
	Overall Latency
	// ByName has one entry per name, in the recorder's order.
	ByName []Latency
	// ErrorsByKind counts errors by Kind name (no "ok"); kinds that never
	// happened are left out.
	ErrorsByKind map[string]int64
	// Above[i] counts requests slower than Config.AboveMS[i].
	Above []int64
	hist  *hdrhistogram.Histogram
	max   time.Duration
}

// Quantile returns the overall q-th percentile (0 < q ≤ 100) in
// milliseconds; 100 is the exact maximum.
func (s Stats) Quantile(q float64) float64 {
	if s.hist == nil || s.hist.TotalCount() == 0 {
		return 0
	}
	return quantile(s.hist, s.max, q)
}

// Snapshot is the short form of the overall latency.
func (s Stats) Snapshot() Snapshot {
	o := s.Overall
	return Snapshot{Requests: o.Requests, Errors: o.Errors, AvgMS: o.AvgMS, P95MS: o.P95MS, MaxMS: o.MaxMS, P99MS: o.P99MS}
}

func quantile(h *hdrhistogram.Histogram, maxD time.Duration, q float64) float64 {
	m := ms(maxD)
	if q >= 100 {
		return m
	}
	// The histogram reports the upper edge of a bucket; never above the
	// exact maximum.
	return min(float64(h.ValueAtQuantile(q))/1000, m)
}

func latencyOf(name string, s *series) Latency {
	l := Latency{Name: name, Requests: s.requests, Errors: s.errors}
	if s.timed == 0 {
		return l
	}
	l.AvgMS = ms(s.sum) / float64(s.timed)
	l.MinMS, l.MaxMS = ms(s.min), ms(s.max)
	l.P50MS = quantile(s.hist, s.max, 50)
	l.P90MS = quantile(s.hist, s.max, 90)
	l.P95MS = quantile(s.hist, s.max, 95)
	l.P99MS = quantile(s.hist, s.max, 99)
	return l
}

// Stats merges the shards. It allocates a histogram per series: call it
// about once a second, not per request.
func (r *Recorder) Stats() Stats {
	overall := newSeries()
	byName := make([]*series, len(r.names))
	for i := range byName {
		byName[i] = newSeries()
	}
	var kinds [numKinds]int64
	above := make([]int64, len(r.aboveUS))
	for _, s := range r.shards {
		s.mu.Lock()
		overall.merge(s.overall)
		for i, n := range s.byName {
			byName[i].merge(n)
		}
		for i, k := range s.kinds {
			kinds[i] += k
		}
		for i, a := range s.above {
			above[i] += a
		}
		s.mu.Unlock()
	}
	st := Stats{Overall: latencyOf("", overall), ErrorsByKind: map[string]int64{}, Above: above, hist: overall.hist, max: overall.max}
	for i, n := range byName {
		st.ByName = append(st.ByName, latencyOf(r.names[i], n))
	}
	for k := Kind1xx; k < numKinds; k++ {
		if kinds[k] > 0 {
			st.ErrorsByKind[k.String()] = kinds[k]
		}
	}
	return st
}

// Snapshot reads the recorder's overall latency.
func (r *Recorder) Snapshot() Snapshot { return r.Stats().Snapshot() }

// Quantile returns the q-th percentile (0 < q ≤ 100) in milliseconds.
func (r *Recorder) Quantile(q float64) float64 { return r.Stats().Quantile(q) }

// Samples returns a uniform sample (without replacement) of at most
// Config.Reservoir of the recorded latencies, in milliseconds: each shard
// keeps a uniform reservoir (Algorithm R) and the merge draws from the
// shards in proportion to what each saw, so every recorded request had the
// same chance to be in it. The order is not meaningful.
func (r *Recorder) Samples() []float64 {
	type part struct {
		left   int64 // requests of the shard not yet drawn from
		sample []float64
	}
	var parts []*part
	var total int64
	for _, s := range r.shards {
		s.mu.Lock()
		if s.seen > 0 {
			parts = append(parts, &part{left: s.seen, sample: slices.Clone(s.sample)})
			total += s.seen
		}
		s.mu.Unlock()
	}
	k := int(min(total, int64(r.size)))
	out := make([]float64, 0, k)
	rng := rand.New(rand.NewPCG(uint64(total), 42))
	for len(out) < k {
		// Pick a shard with probability left/total (sequential
		// hypergeometric draw), then a random unused sample of it.
		x := rng.Int64N(total)
		for _, p := range parts {
			if x < p.left {
				i := rng.IntN(len(p.sample))
				out = append(out, p.sample[i])
				p.sample[i] = p.sample[len(p.sample)-1]
				p.sample = p.sample[:len(p.sample)-1]
				p.left--
				total--
				break
			}
			x -= p.left
		}
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// wilsonLower is the lower bound of the Wilson score interval of k
// successes in n trials at z standard deviations.
func wilsonLower(k, n int64, z float64) float64 {
	if n == 0 {
		return 0
	}
	p := float64(k) / float64(n)
	nf := float64(n)
	z2 := z * z
	centre := p + z2/(2*nf)
	margin := z * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	return max((centre-margin)/(1+z2/nf), 0)
}
