package stats

import (
	"math"
	"testing"
)

var inf = math.Inf(1)

func TestNearestRank(t *testing.T) {
	t.Parallel()
	ten := []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	tests := []struct {
		name   string
		values []float64
		q      float64
		want   float64
		ok     bool
	}{
		{"empty", nil, 0.95, 0, false},
		{"q zero", ten, 0, 0, false},
		{"q above one", ten, 1.5, 0, false},
		{"one value", []float64{42}, 0.95, 42, true},
		{"p95 of ten is the 10th", ten, 0.95, 10, true},
		{"p90 of ten is the 9th", ten, 0.90, 9, true},
		{"p50 of ten is the 5th", ten, 0.5, 5, true},
		{"p100 is the max", ten, 1, 10, true},
		{"p95 of twenty is the 19th", seq(20), 0.95, 19, true},
		{"p95 of a hundred is the 95th", seq(100), 0.95, 95, true},
		{"p95 of 21 is the 20th (ceil 19.95)", seq(21), 0.95, 20, true},
		{"ties", []float64{5, 5, 5, 100}, 0.5, 5, true},
	}
	for _, tt := range tests {
		got, ok := NearestRank(tt.values, tt.q)
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s: NearestRank(%v, %v) = %v, %v; want %v, %v", tt.name, tt.values, tt.q, got, ok, tt.want, tt.ok)
		}
	}
	if ten[0] != 10 {
		t.Errorf("NearestRank sorted its input")
	}
}

func seq(n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(n - i) // descending, to prove it sorts
	}
	return out
}

func TestQuantile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		q       float64
		buckets []Bucket
		want    float64
		ok      bool
	}{
		{"no buckets", 0.95, nil, 0, false},
		{"only +Inf", 0.95, []Bucket{{inf, 10}}, 0, false},
		{"no +Inf bucket", 0.95, []Bucket{{0.1, 1}, {0.5, 2}}, 0, false},
		{"no observations", 0.95, []Bucket{{0.1, 0}, {inf, 0}}, 0, false},
		{"q out of range", 1.1, []Bucket{{0.1, 1}, {inf, 1}}, 0, false},
		// 100 observations: 50 ≤ 0.1, 40 in (0.1, 0.5], 10 in (0.5, 1].
		// rank 95 is 5 of the 10 in (0.5, 1]: 0.5 + 0.5·0.5 = 0.75.
		{"interpolates inside the bucket", 0.95, []Bucket{{0.1, 50}, {0.5, 90}, {1, 100}, {inf, 100}}, 0.75, true},
		{"unsorted input", 0.95, []Bucket{{inf, 100}, {1, 100}, {0.1, 50}, {0.5, 90}}, 0.75, true},
		// rank 47.5 of 50 in [0, 0.1]: 0.095.
		{"first bucket starts at zero", 0.5, []Bucket{{0.1, 95}, {0.5, 100}, {inf, 100}}, 0.1 * (50.0 / 95.0), true},
		{"rank in +Inf bucket gives the highest finite bound", 0.95, []Bucket{{0.1, 10}, {0.5, 20}, {inf, 100}}, 0.5, true},
		{"non-positive first bound", 0.5, []Bucket{{0, 10}, {1, 10}, {inf, 10}}, 0, true},
		{"non-monotonic counts are clamped", 0.95, []Bucket{{0.1, 50}, {0.5, 40}, {1, 100}, {inf, 100}}, 0.5 + 0.5*(45.0/50.0), true},
		{"q zero", 0, []Bucket{{0.1, 10}, {inf, 10}}, 0, true},
	}
	for _, tt := range tests {
		got, ok := Quantile(tt.q, tt.buckets)
		if ok != tt.ok || math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("%s: Quantile(%v) = %v, %v; want %v, %v", tt.name, tt.q, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCounterDelta(t *testing.T) {
	t.Parallel()
	tests := []struct{ prev, cur, want float64 }{
		{0, 0, 0},
		{10, 15, 5},
		{10, 10, 0},
		{100, 7, 7}, // reset: counted 7 since the restart
	}
	for _, tt := range tests {
		if got := CounterDelta(tt.prev, tt.cur); got != tt.want {
			t.Errorf("CounterDelta(%v, %v) = %v; want %v", tt.prev, tt.cur, got, tt.want)
		}
	}
}

func TestBucketDeltas(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		prev, cur []Bucket
		want      []Bucket
	}{
		{"first scrape counts from zero", nil, []Bucket{{0.1, 3}, {inf, 4}}, []Bucket{{0.1, 3}, {inf, 4}}},
		{"growth", []Bucket{{0.1, 3}, {inf, 4}}, []Bucket{{0.1, 5}, {inf, 10}}, []Bucket{{0.1, 2}, {inf, 6}}},
		{"no traffic", []Bucket{{0.1, 3}, {inf, 4}}, []Bucket{{0.1, 3}, {inf, 4}}, []Bucket{{0.1, 0}, {inf, 0}}},
		{"reset uses the current histogram", []Bucket{{0.1, 30}, {inf, 40}}, []Bucket{{0.1, 2}, {inf, 3}}, []Bucket{{0.1, 2}, {inf, 3}}},
		{"new bucket counts from zero", []Bucket{{inf, 4}}, []Bucket{{0.1, 1}, {inf, 5}}, []Bucket{{0.1, 1}, {inf, 1}}},
	}
	for _, tt := range tests {
		got := BucketDeltas(tt.prev, tt.cur)
		if len(got) != len(tt.want) {
			t.Fatalf("%s: BucketDeltas = %v; want %v", tt.name, got, tt.want)
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("%s: BucketDeltas = %v; want %v", tt.name, got, tt.want)
				break
			}
		}
	}
}

func TestRatio(t *testing.T) {
	t.Parallel()
	tests := []struct {
		part, whole, want float64
		ok                bool
	}{
		{0, 0, 0, false}, // no traffic: no rate
		{1, 0, 0, false},
		{0, 10, 0, true},
		{1, 100, 0.01, true},
		{5, 10, 0.5, true},
	}
	for _, tt := range tests {
		got, ok := Ratio(tt.part, tt.whole)
		if ok != tt.ok || got != tt.want {
			t.Errorf("Ratio(%v, %v) = %v, %v; want %v, %v", tt.part, tt.whole, got, ok, tt.want, tt.ok)
		}
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []float64
		want Summary
		ok   bool
	}{
		{"empty", nil, Summary{}, false},
		{"only NaN", []float64{math.NaN()}, Summary{}, false},
		{"one", []float64{5}, Summary{Min: 5, Max: 5, Mean: 5, P95: 5, N: 1}, true},
		{"twenty, NaN skipped", append([]float64{math.NaN()}, seq(20)...), Summary{Min: 1, Max: 20, Mean: 10.5, P95: 19, N: 20}, true},
	}
	for _, tt := range tests {
		got, ok := Summarize(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("%s: Summarize = %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
