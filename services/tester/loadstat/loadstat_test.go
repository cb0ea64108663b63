package loadstat

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// nearestRank is the textbook quantile the histogram must agree with.
func nearestRank(sorted []time.Duration, q float64) float64 {
	i := int(math.Ceil(q/100*float64(len(sorted)))) - 1
	return float64(sorted[max(i, 0)]) / float64(time.Millisecond)
}

func TestRecorderQuantiles(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name string
		gen  func(i int) time.Duration
		n    int
	}{
		{"uniform 1-100ms", func(i int) time.Duration { return time.Duration(i%100+1) * time.Millisecond }, 1000},
		{"one value", func(int) time.Duration { return 42 * time.Millisecond }, 10},
		{"long tail", func(i int) time.Duration {
			if i%20 == 0 {
				return 3 * time.Second
			}
			return time.Duration(rng.IntN(50)+1) * time.Millisecond
		}, 2000},
		{"sub-millisecond", func(i int) time.Duration { return time.Duration(100+i) * time.Microsecond }, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecorder()
			var all []time.Duration
			var sum time.Duration
			for i := range tt.n {
				d := tt.gen(i)
				all = append(all, d)
				sum += d
				r.Record(d, false)
			}
			slices.Sort(all)
			s := r.Snapshot()
			if s.Requests != int64(tt.n) || s.Errors != 0 {
				t.Fatalf("requests/errors = %d/%d", s.Requests, s.Errors)
			}
			for _, q := range []float64{50, 95, 99} {
				want := nearestRank(all, q)
				got := r.Quantile(q)
				if math.Abs(got-want) > want*0.001+0.001 {
					t.Errorf("p%v = %v, nearest rank %v", q, got, want)
				}
			}
			if want := nearestRank(all, 95); math.Abs(s.P95MS-want) > want*0.001+0.001 {
				t.Errorf("snapshot p95 = %v, want %v", s.P95MS, want)
			}
			if want := float64(all[len(all)-1]) / 1e6; s.MaxMS != want {
				t.Errorf("max = %v, want %v", s.MaxMS, want)
			}
			if want := float64(sum) / 1e6 / float64(tt.n); math.Abs(s.AvgMS-want) > 1e-9 {
				t.Errorf("avg = %v, want %v", s.AvgMS, want)
			}
		})
	}
}

func TestRecorderEmptyAndClamped(t *testing.T) {
	t.Parallel()
	r := NewRecorder()
	if s := r.Snapshot(); s != (Snapshot{}) || s.ErrorRate() != 0 || r.Quantile(95) != 0 {
		t.Fatalf("empty recorder: %+v", s)
	}
	r.Record(0, true)            // below the histogram's range
	r.Record(2*time.Hour, false) // above it
	s := r.Snapshot()
	if s.Requests != 2 || s.Errors != 1 || s.ErrorRate() != 0.5 {
		t.Fatalf("snapshot %+v", s)
	}
	if s.MaxMS != float64(2*time.Hour/time.Millisecond) {
		t.Errorf("max = %v", s.MaxMS)
	}
}

func TestRecorderConcurrent(t *testing.T) {
	t.Parallel()
	r := NewRecorder()
	var wg sync.WaitGroup
	for v := range 8 {
		wg.Go(func() {
			for i := range 500 {
				r.Record(time.Duration(i+1)*time.Millisecond, (i+v)%10 == 0)
				if i%100 == 0 {
					_ = r.Snapshot()
				}
			}
		})
	}
	wg.Wait()
	s := r.Snapshot()
	if s.Requests != 4000 || s.Errors != 400 {
		t.Fatalf("requests/errors = %d/%d, want 4000/400", s.Requests, s.Errors)
	}
}

func TestGatesWithDefaults(t *testing.T) {
	t.Parallel()
	if g := (Gates{}).WithDefaults(); !reflect.DeepEqual(g, Gates{P95MS: 2100, ErrorRate: 0.01}) {
		t.Errorf("defaults = %+v", g)
	}
	if g := (Gates{P95MS: 500, ErrorRate: 0.05}).WithDefaults(); !reflect.DeepEqual(g, Gates{P95MS: 500, ErrorRate: 0.05}) {
		t.Errorf("explicit gates changed: %+v", g)
	}
}

func TestJudge(t *testing.T) {
	t.Parallel()
	seed := Gates{}.WithDefaults()
	tests := []struct {
		name   string
		s      Snapshot
		g      Gates
		pass   bool
		metric string
		reason string
	}{
		{"within the seed's gates", Snapshot{Requests: 100, Errors: 1, P95MS: 2100}, seed, true, "", ""},
		{"p95 over", Snapshot{Requests: 100, P95MS: 2100.5}, seed, false, MetricP95,
			"P95 response time 2100ms exceeds threshold 2100ms"},
		{"error rate over", Snapshot{Requests: 100, Errors: 2, P95MS: 10}, seed, false, MetricErrorRate,
			"error rate 2.00% exceeds threshold 1.00% (2 of 100 requests failed)"},
		{"a zero error gate allows no error", Snapshot{Requests: 100, Errors: 1, P95MS: 10}, Gates{P95MS: 2100, ErrorRate: 0}, false, MetricErrorRate,
			"error rate 1.00% exceeds threshold 0.00% (1 of 100 requests failed)"},
		{"both over: p95 named first", Snapshot{Requests: 10, Errors: 10, P95MS: 3000}, Gates{P95MS: 1000, ErrorRate: 0.5}, false, MetricP95,
			"P95 response time 3000ms exceeds threshold 1000ms; error rate 100.00% exceeds threshold 50.00% (10 of 10 requests failed)"},
		{"custom gates pass", Snapshot{Requests: 10, Errors: 1, P95MS: 900}, Gates{P95MS: 1000, ErrorRate: 0.1}, true, "", ""},
		{"nothing completed", Snapshot{}, seed, false, MetricRequests, "no request completed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Judge(tt.s, tt.g)
			if v.Pass != tt.pass || v.Metric != tt.metric || v.Reason != tt.reason {
				t.Errorf("Judge = %+v, want pass=%v metric=%q reason=%q", v, tt.pass, tt.metric, tt.reason)
			}
			if !v.Pass && v.Metric != MetricRequests && v.Value <= v.Threshold {
				t.Errorf("value/threshold not set: %+v", v)
			}
			if strings.Contains(v.Reason, "%!") {
				t.Errorf("bad format: %q", v.Reason)
			}
		})
	}
}
