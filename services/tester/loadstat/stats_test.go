package loadstat

import (
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStatusKind(t *testing.T) {
	t.Parallel()
	for code, want := range map[int]Kind{200: KindOK, 201: KindOK, 299: KindOK, 101: Kind1xx, 301: Kind3xx, 404: Kind4xx, 429: Kind4xx, 500: Kind5xx, 503: Kind5xx, 600: KindOther, 0: KindOther} {
		if got := StatusKind(code); got != want {
			t.Errorf("StatusKind(%d) = %s, want %s", code, got, want)
		}
	}
	if KindDropped.String() != "dropped" || KindTimeout.String() != "timeout" || Kind(200).String() != "other" {
		t.Error("kind names")
	}
}

func TestRecorderNamesKindsAndDrops(t *testing.T) {
	t.Parallel()
	r := New(Config{Names: []string{"health", "estimates"}, Shards: 3, AboveMS: []float64{50}})
	for i := range 100 {
		r.Add(i, 0, time.Duration(i+1)*time.Millisecond, KindOK)
		k := KindOK
		if i%10 == 0 {
			k = Kind5xx
		}
		if i%25 == 0 {
			k = KindTimeout
		}
		r.Add(i, 1, 100*time.Millisecond, k)
	}
	r.Drop(7, 1)
	st := r.Stats()
	o := st.Overall
	if o.Requests != 201 || o.Errors != 12+1 || o.MinMS != 1 || o.MaxMS != 100 {
		t.Fatalf("overall %+v", o)
	}
	// avg over the 200 timed requests (the dropped one has no latency)
	if want := (50.5*100 + 100*100) / 200; math.Abs(o.AvgMS-want) > 1e-9 {
		t.Errorf("avg %v, want %v", o.AvgMS, want)
	}
	h, e := st.ByName[0], st.ByName[1]
	if h.Name != "health" || h.Requests != 100 || h.Errors != 0 || math.Abs(h.P50MS-50) > 0.1 || math.Abs(h.P90MS-90) > 0.1 || math.Abs(h.P99MS-99) > 0.1 {
		t.Errorf("health %+v", h)
	}
	if e.Name != "estimates" || e.Requests != 101 || e.Errors != 13 || e.P50MS != 100 {
		t.Errorf("estimates %+v", e)
	}
	// Timeouts: 0, 25, 50, 75; 5xx: 10, 20, …, 90 but 50 (and 0).
	if k := st.ErrorsByKind; k["timeout"] != 4 || k["5xx"] != 8 || k["dropped"] != 1 || len(k) != 3 {
		t.Errorf("errors by kind %v", k)
	}
	// Slower than 50ms: health 51..100 (50) and every estimates request (100).
	if len(st.Above) != 1 || st.Above[0] != 150 {
		t.Errorf("above %v", st.Above)
	}
	if q := st.Quantile(100); q != 100 {
		t.Errorf("q100 = %v", q)
	}
}

// Samples is a bounded uniform sample: at most the reservoir, all of them
// when fewer were recorded, and over shards of very different sizes each
// value has the same chance (the sample's mean is the population's).
func TestSamples(t *testing.T) {
	t.Parallel()
	small := New(Config{Shards: 4})
	for i := range 50 {
		small.Add(i, 0, time.Duration(i)*time.Millisecond, KindOK)
	}
	got := small.Samples()
	slices.Sort(got)
	if len(got) != 50 || got[0] != 0 || got[49] != 49 {
		t.Fatalf("samples of 50: %d, %v…%v", len(got), got[0], got[len(got)-1])
	}

	r := New(Config{Shards: 2, Reservoir: 1000})
	// Shard 0 sees 90 000 requests of 10ms, shard 1 10 000 of 100ms: the
	// population's mean is 19ms.
	for i := range 100_000 {
		if i%10 == 0 {
			r.Add(1, 0, 100*time.Millisecond, KindOK)
		} else {
			r.Add(0, 0, 10*time.Millisecond, KindOK)
		}
	}
	s := r.Samples()
	if len(s) != 1000 {
		t.Fatalf("%d samples, want the reservoir's 1000", len(s))
	}
	var slow int
	for _, v := range s {
		if v == 100 {
			slow++
		}
	}
	// 10 % slow: binomial(1000, 0.1) sd ≈ 9.5; ±40 is > 4 sd.
	if slow < 60 || slow > 140 {
		t.Errorf("%d of 1000 samples from the 10 %% shard", slow)
	}
}

func TestRecorderShardsConcurrent(t *testing.T) {
	t.Parallel()
	r := New(Config{Names: []string{"a", "b"}, Shards: 4})
	var wg sync.WaitGroup
	for v := range 8 {
		wg.Go(func() {
			for i := range 500 {
				k := KindOK
				if (i+v)%10 == 0 {
					k = Kind4xx
				}
				r.Add(v, i%2, time.Duration(i+1)*time.Millisecond, k)
				if i%100 == 0 {
					_ = r.Stats()
				}
			}
		})
	}
	wg.Wait()
	st := r.Stats()
	if st.Overall.Requests != 4000 || st.Overall.Errors != 400 || st.ByName[0].Requests != 2000 || st.ErrorsByKind["4xx"] != 400 {
		t.Fatalf("stats %+v", st)
	}
}

func TestJudgePercentileGates(t *testing.T) {
	t.Parallel()
	s := Snapshot{Requests: 100, P95MS: 100}
	q := func(p float64) float64 { return p * 10 } // p99 = 990, max = 1000
	g := Gates{P95MS: 2100, ErrorRate: 0.01, Percentiles: []PercentileGate{{99, 1000}, {100, 999}}}
	v := Judge(s, g, q)
	if v.Pass || v.Metric != "api_response_time_max" || v.Reason != "max response time 1000ms exceeds threshold 999ms" {
		t.Errorf("verdict %+v", v)
	}
	g.Percentiles[1].MaxMS = 1000
	if v := Judge(s, g, q); !v.Pass {
		t.Errorf("equal passes: %+v", v)
	}
	g.Percentiles = []PercentileGate{{99.9, 500}}
	if v := Judge(s, g, q); v.Pass || v.Metric != "api_response_time_p99_9" || !strings.Contains(v.Reason, "P99.9 response time 999ms") {
		t.Errorf("p99.9: %+v", v)
	}
	if v := Judge(s, g); !v.Pass {
		t.Errorf("without a quantiler percentile gates are not judged: %+v", v)
	}
}

func TestClearlyFailed(t *testing.T) {
	t.Parallel()
	g := Gates{P95MS: 2100, ErrorRate: 0.01, Percentiles: []PercentileGate{{99, 3000}, {100, 10000}}}
	stats := func(n, errs int64, above ...int64) Stats {
		return Stats{Overall: Latency{Requests: n, Errors: errs}, Above: above}
	}
	tests := []struct {
		name   string
		st     Stats
		g      Gates
		failed bool
		reason string
	}{
		{"too few requests", stats(99, 99, 0, 0, 0), g, false, ""},
		{"30% errors after 100", stats(100, 30, 0, 0, 0), g, true, "error rate 30.00% after 100 requests (30 failed) is clearly above the 1.00% gate"},
		{"2% errors after 100: not clear", stats(100, 2, 0, 0, 0), g, false, ""},
		{"2% errors after 10 000: clear", stats(10_000, 200, 0, 0, 0), g, true, "error rate 2.00%"},
		{"1.1% errors after 10 000: not clear", stats(10_000, 110, 0, 0, 0), g, false, ""},
		{"a zero gate: one error", stats(100, 1, 0, 0, 0), Gates{P95MS: 2100, Percentiles: g.Percentiles}, true, "clearly above the 0.00% gate"},
		{"p95 broken by 30% slow", stats(200, 0, 60, 0, 0), g, true, "P95 response time gate 2100ms clearly broken: 60 of 200 requests (30.00%) slower, 5.00% allowed"},
		{"p95: 6% slow after 200 is not clear", stats(200, 0, 12, 0, 0), g, false, ""},
		{"max: one over", stats(100, 0, 1, 1, 1), g, true, "max response time gate 10000ms clearly broken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			why, failed := ClearlyFailed(tt.st, tt.g)
			if failed != tt.failed || !strings.Contains(why, tt.reason) {
				t.Errorf("ClearlyFailed = %v %q, want %v %q", failed, why, tt.failed, tt.reason)
			}
		})
	}
	if got := g.AboveMS(); !slices.Equal(got, []float64{2100, 3000, 10000}) {
		t.Errorf("AboveMS = %v", got)
	}
}
