// Package stats is the arithmetic of the monitor's sources: nearest-rank
// percentiles over one tick's requests, histogram quantiles from bucket
// deltas (as Prometheus' histogram_quantile computes them) and rates from
// counter deltas. It is pure: no I/O, no clock.
package stats

import (
	"math"
	"sort"
)

// NearestRank returns the q-quantile (0 < q ≤ 1) of values by the
// nearest-rank method: the smallest value such that at least q·n of the
// values are ≤ it, i.e. sorted[ceil(q·n)-1]. ok is false when values is
// empty or q is out of range. values is not modified.
func NearestRank(values []float64, q float64) (v float64, ok bool) {
	if len(values) == 0 || !(q > 0 && q <= 1) {
		return 0, false
	}
	s := append([]float64(nil), values...)
	sort.Float64s(s)
	rank := int(math.Ceil(q * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1], true
}

// Bucket is one cumulative histogram bucket: Count observations were ≤ Upper.
type Bucket struct {
	Upper float64
	Count float64
}

// Quantile computes the q-quantile of a cumulative histogram the way
// Prometheus' histogram_quantile does: find the bucket holding rank q·total
// and interpolate linearly inside it (the first bucket starts at 0 when its
// upper bound is positive). When the rank falls in the +Inf bucket the
// highest finite upper bound is returned (the true value is at least that).
// buckets need not be sorted; a +Inf bucket must be present (it holds the
// total). ok is false when there are fewer than two buckets, no +Inf bucket,
// no observations, or q is out of [0, 1].
func Quantile(q float64, buckets []Bucket) (v float64, ok bool) {
	if !(q >= 0 && q <= 1) || len(buckets) < 2 {
		return 0, false
	}
	b := append([]Bucket(nil), buckets...)
	sort.Slice(b, func(i, j int) bool { return b[i].Upper < b[j].Upper })
	if !math.IsInf(b[len(b)-1].Upper, +1) {
		return 0, false
	}
	// Cumulative counts must not decrease; scraped data can be slightly
	// inconsistent (buckets read while being updated): clamp like Prometheus.
	for i := 1; i < len(b); i++ {
		if b[i].Count < b[i-1].Count {
			b[i].Count = b[i-1].Count
		}
	}
	total := b[len(b)-1].Count
	if !(total > 0) {
		return 0, false
	}
	rank := q * total
	i := sort.Search(len(b)-1, func(i int) bool { return b[i].Count >= rank })
	if i == len(b)-1 {
		return b[len(b)-2].Upper, true
	}
	if i == 0 && b[0].Upper <= 0 {
		return b[0].Upper, true
	}
	start, prev := 0.0, 0.0
	if i > 0 {
		start, prev = b[i-1].Upper, b[i-1].Count
	}
	end := b[i].Upper
	count := b[i].Count - prev
	if count <= 0 {
		return end, true
	}
	return start + (end-start)*((rank-prev)/count), true
}

// CounterDelta is how much a counter grew from prev to cur. A counter that
// went down was reset (the process restarted) and has counted cur since, so
// the delta is cur.
func CounterDelta(prev, cur float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// BucketDeltas are the observations of a cumulative histogram between two
// scrapes, bucket by bucket (matched by upper bound). When any bucket went
// down the histogram was reset, and the deltas are cur itself. Buckets that
// are only in cur count from zero.
func BucketDeltas(prev, cur []Bucket) []Bucket {
	before := make(map[float64]float64, len(prev))
	for _, b := range prev {
		before[b.Upper] = b.Count
	}
	out := make([]Bucket, len(cur))
	for i, b := range cur {
		d := b.Count - before[b.Upper]
		if d < 0 {
			return append([]Bucket(nil), cur...)
		}
		out[i] = Bucket{Upper: b.Upper, Count: d}
	}
	return out
}

// Ratio is part/whole, with ok false when whole is zero (nothing happened:
// no rate, rather than a made-up zero).
func Ratio(part, whole float64) (v float64, ok bool) {
	if !(whole > 0) {
		return 0, false
	}
	return part / whole, true
}

// Summary is min / max / mean / p95 (nearest rank) of a metric's values.
type Summary struct {
	Min, Max, Mean, P95 float64
	N                   int
}

// Summarize summarises values; NaN values are skipped. ok is false when
// no value is left.
func Summarize(values []float64) (s Summary, ok bool) {
	finite := make([]float64, 0, len(values))
	for _, v := range values {
		if !math.IsNaN(v) {
			finite = append(finite, v)
		}
	}
	if len(finite) == 0 {
		return Summary{}, false
	}
	s = Summary{Min: finite[0], Max: finite[0], N: len(finite)}
	sum := 0.0
	for _, v := range finite {
		s.Min, s.Max = math.Min(s.Min, v), math.Max(s.Max, v)
		sum += v
	}
	s.Mean = sum / float64(len(finite))
	s.P95, _ = NearestRank(finite, 0.95)
	return s, true
}
