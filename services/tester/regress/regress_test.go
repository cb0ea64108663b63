package regress

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestMannWhitneyHandComputed checks U, z and p against values worked out
// by hand (ranks, tie term, σ, then Φ from a normal table); they agree with
// scipy.stats.mannwhitneyu(current, baseline, method="asymptotic").
func TestMannWhitneyHandComputed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		b, c      []float64
		u, z, p   float64
		tolP      float64
		wantClass Class
	}{
		{
			// c ranks 6..10 sum 40, U = 40 − 5·6/2 = 25; μ = 12.5, no ties:
			// σ = √(25/12·11) = 4.787136; z = (12.5 − 0.5)/σ = 2.506718;
			// Φ(2.5067) = 0.993907 → p = 0.012186.
			name: "separated, current slower", b: []float64{1, 2, 3, 4, 5}, c: []float64{6, 7, 8, 9, 10},
			u: 25, z: 2.506718, p: 0.012186, tolP: 1e-5, wantClass: NotEnoughSamples,
		},
		{
			name: "separated, current faster", b: []float64{6, 7, 8, 9, 10}, c: []float64{1, 2, 3, 4, 5},
			u: 0, z: -2.506718, p: 0.012186, tolP: 1e-5, wantClass: NotEnoughSamples,
		},
		{
			// Merged: 1 | 2 2 2 | 3 3 3 | 4 4 | 5 | 6 → mid-ranks 1, 3, 6, 8.5, 10, 11.
			// c's rank sum 3 + 2·6 + 8.5 + 10 + 11 = 44.5, U = 44.5 − 21 = 23.5.
			// μ = 15; Σ(t³−t) = 24 + 24 + 6 = 54; σ² = 30/12·(12 − 54/110) =
			// 28.772727, σ = 5.364022; z = (8.5 − 0.5)/σ = 1.491418;
			// Φ(1.4914) = 0.932074 → p = 0.135852.
			name: "ties", b: []float64{1, 2, 2, 3, 4}, c: []float64{2, 3, 3, 4, 5, 6},
			u: 23.5, z: 1.491418, p: 0.135852, tolP: 2e-4, wantClass: NotEnoughSamples,
		},
		{
			// Every value tied: σ = 0, no evidence either way.
			name: "all equal", b: []float64{5, 5, 5, 5, 5, 5, 5, 5}, c: []float64{5, 5, 5, 5, 5, 5, 5, 5},
			u: 32, z: 0, p: 1, tolP: 0, wantClass: Pass,
		},
		{
			// 8 vs 8 fully separated: U = 64, μ = 32, σ = √(64·17/12) = 9.521905,
			// z = 31.5/σ = 3.308160, p = 2·(1 − Φ(3.3082)) = 0.000939.
			name: "smallest detectable", b: []float64{10, 11, 12, 13, 14, 15, 16, 17}, c: []float64{20, 21, 22, 23, 24, 25, 26, 27},
			u: 64, z: 3.308160, p: 0.000939, tolP: 1e-5, wantClass: High,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, z, p := mannWhitney(sorted(tt.b), sorted(tt.c))
			if u != tt.u {
				t.Errorf("U = %v, want %v", u, tt.u)
			}
			if math.Abs(z-tt.z) > 1e-5 {
				t.Errorf("z = %.6f, want %.6f", z, tt.z)
			}
			if math.Abs(p-tt.p) > tt.tolP {
				t.Errorf("p = %.6f, want %.6f ± %g", p, tt.p, tt.tolP)
			}
			if got := Compare(tt.b, tt.c, Options{}).Class; got != tt.wantClass {
				t.Errorf("Compare class = %v, want %v", got, tt.wantClass)
			}
		})
	}
}

func sorted(s []float64) []float64 {
	c := append([]float64(nil), s...)
	for i := 1; i < len(c); i++ {
		for j := i; j > 0 && c[j] < c[j-1]; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
	return c
}

func TestQuantile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s    []float64
		q    float64
		want float64
	}{
		{nil, 0.5, 0},
		{[]float64{10}, 0.95, 10},
		{[]float64{1, 2, 3, 4}, 0.5, 2.5},
		{[]float64{1, 2, 3, 4}, 0.95, 3.85}, // h = 0.95·3 = 2.85
		{[]float64{1, 2, 3, 4}, 0, 1},
		{[]float64{1, 2, 3, 4}, 1, 4},
	}
	for _, tt := range tests {
		if got := Quantile(tt.s, tt.q); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("Quantile(%v, %v) = %v, want %v", tt.s, tt.q, got, tt.want)
		}
	}
}

func TestCompareNonComparisons(t *testing.T) {
	t.Parallel()
	ten := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		name     string
		b, c     []float64
		o        Options
		want     Class
		contains string
	}{
		{"no baseline", nil, ten, Options{}, NoBaseline, "no baseline: no earlier successful run"},
		{"baseline run without samples", []float64{}, ten, Options{BaselineRun: "r-7"}, NoBaseline, "run r-7 has no latency samples"},
		{"few baseline samples", []float64{1, 2, 3}, ten, Options{BaselineRun: "r-7"}, NotEnoughSamples, "not enough samples: run r-7 has 3, this run 10 (need 8 each)"},
		{"few current samples", ten, []float64{100}, Options{}, NotEnoughSamples, "the baseline run has 10, this run 1"},
		{"MinSamples raised", ten, ten, Options{MinSamples: 20}, NotEnoughSamples, "need 20 each"},
		{"NaN sample", ten, []float64{1, math.NaN()}, Options{}, Invalid, "current sample 1 is NaN"},
		{"Inf sample", []float64{math.Inf(1)}, ten, Options{}, Invalid, "baseline sample 0 is +Inf"},
		{"alpha too big", ten, ten, Options{Alpha: 1.5}, Invalid, "alpha 1.5 not in (0, 1)"},
		{"negative floor", ten, ten, Options{EffectFloor: -0.1}, Invalid, "effect floor -0.1"},
		{"min samples 1", ten, ten, Options{MinSamples: 1}, Invalid, "min samples 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := Compare(tt.b, tt.c, tt.o)
			if r.Class != tt.want {
				t.Fatalf("class = %v, want %v (%s)", r.Class, tt.want, r)
			}
			if r.Compared() || r.Regressed() || r.Class == Pass {
				t.Errorf("a non-comparison must not count as compared or pass: %+v", r)
			}
			if !strings.Contains(r.String(), tt.contains) {
				t.Errorf("String() = %q, want it to contain %q", r.String(), tt.contains)
			}
		})
	}
}

func TestCompareDoesNotModifyInputs(t *testing.T) {
	t.Parallel()
	b := []float64{9, 3, 7, 1, 5, 8, 2, 6}
	c := []float64{19, 13, 17, 11, 15, 18, 12, 16}
	Compare(b, c, Options{})
	if b[0] != 9 || c[0] != 19 {
		t.Errorf("inputs were sorted in place: %v %v", b, c)
	}
}

// logNormal draws n latencies (ms) with median medianMS and log-σ 0.5 — a
// typical HTTP latency shape with a long right tail.
func logNormal(rng *rand.Rand, n int, medianMS float64) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = medianMS * math.Exp(0.5*rng.NormFloat64())
	}
	return s
}

// The statistical requirement: two runs from the same latency
// distribution are not flagged (over 20 pairs, at most 1 false alarm).
func TestSameDistributionNotFlagged(t *testing.T) {
	t.Parallel()
	for _, n := range []int{50, 200, 2000} {
		alarms := 0
		for seed := range uint64(20) {
			rng := rand.New(rand.NewPCG(seed, uint64(n)))
			r := Compare(logNormal(rng, n, 120), logNormal(rng, n, 120), Options{BaselineRun: "r-1"})
			if !r.Compared() {
				t.Fatalf("n=%d seed %d: not compared: %s", n, seed, r)
			}
			if r.Class == High || r.Class == Low {
				alarms++
				t.Logf("n=%d seed %d: false alarm: %s", n, seed, r)
			}
		}
		if alarms > 1 {
			t.Errorf("n=%d: %d false alarms over 20 same-distribution pairs, want at most 1", n, alarms)
		}
	}
}

// The statistical requirement: a 30 % shift is flagged every time.
func TestThirtyPercentShiftFlagged(t *testing.T) {
	t.Parallel()
	for _, n := range []int{200, 2000} {
		for seed := range uint64(20) {
			rng := rand.New(rand.NewPCG(seed, 1000+uint64(n)))
			base := logNormal(rng, n, 120)
			cur := logNormal(rng, n, 120*1.3)
			r := Compare(base, cur, Options{BaselineRun: "r-41"})
			if r.Class != High || !r.Regressed() {
				t.Errorf("n=%d seed %d: 30 %% slower classified %v, want High: %s", n, seed, r.Class, r)
				continue
			}
			msg := r.String()
			if !strings.HasPrefix(msg, "regression: p95 +") || !strings.Contains(msg, " vs run r-41, p < 0.01 (median +") {
				t.Errorf("message %q lacks the p95 change, the run or the p-value", msg)
			}
			// And the mirror image is an improvement, never a regression.
			if back := Compare(cur, base, Options{}); back.Class != Low || back.Regressed() {
				t.Errorf("n=%d seed %d: 30 %% faster classified %v, want Low: %s", n, seed, back.Class, back)
			}
		}
	}
}

// A shift that is significant with many samples but smaller than the effect
// floor passes; with the floor lowered below it, it is flagged.
func TestEffectFloor(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 7))
	base := logNormal(rng, 5000, 120)
	cur := logNormal(rng, 5000, 120*1.05)
	r := Compare(base, cur, Options{})
	if r.P >= DefaultAlpha {
		t.Fatalf("a 5 %% shift over 5000 samples should be significant; p = %g", r.P)
	}
	if r.Class != Pass {
		t.Errorf("5 %% shift under a 10 %% floor: class %v, want Pass: %s", r.Class, r)
	}
	if !strings.Contains(r.String(), "significant but below the 10 % effect floor") {
		t.Errorf("String() = %q, want the floor named", r.String())
	}
	if r := Compare(base, cur, Options{EffectFloor: 0.02}); r.Class != High {
		t.Errorf("5 %% shift under a 2 %% floor: class %v, want High: %s", r.Class, r)
	}
}

func TestResultString(t *testing.T) {
	t.Parallel()
	r := Result{Class: High, BaselineRun: "X", Alpha: 0.01, EffectFloor: 0.1,
		Baseline: Stats{N: 200}, Current: Stats{N: 210}, MedianChange: 0.297, P95Change: 0.31, Shift: 0.29, U: 27512.5, P: 2.1e-9}
	want := "regression: p95 +31 % vs run X, p < 0.01 (median +30 %, shift +29 %; Mann-Whitney U=27512.5, n=200/210, p=2.1e-09)"
	if got := r.String(); got != want {
		t.Errorf("String() =\n %q, want\n %q", got, want)
	}
	r = Result{Class: Pass, Alpha: 0.01, EffectFloor: 0.1, Baseline: Stats{N: 50}, Current: Stats{N: 50},
		MedianChange: -0.004, P95Change: 0.02, Shift: math.NaN(), U: 1300, P: 0.43}
	want = "no regression: p95 +2 % vs the baseline run, p = 0.43 (median -0.4 %, shift n/a; Mann-Whitney U=1300, n=50/50, p=0.43)"
	if got := r.String(); got != want {
		t.Errorf("String() =\n %q, want\n %q", got, want)
	}
	// A regression the shift decided while the p95 went the other way (a
	// tail that noise inflated in the baseline) leads with the shift.
	r = Result{Class: High, BaselineRun: "r1", Alpha: 0.01, EffectFloor: 0.3, Baseline: Stats{N: 139}, Current: Stats{N: 92},
		MedianChange: 0.62, P95Change: -0.01, Shift: 0.65, U: 11643, P: 4.8e-26}
	want = "regression: latency shift +65 % vs run r1, p < 0.01 (median +62 %, p95 -1 %; Mann-Whitney U=11643, n=139/92, p=4.8e-26)"
	if got := r.String(); got != want {
		t.Errorf("String() =\n %q, want\n %q", got, want)
	}
	for c, name := range map[Class]string{Invalid: "Invalid", NoBaseline: "NoBaseline", NotEnoughSamples: "NotEnoughSamples", Pass: "Pass", High: "High", Low: "Low", Class(9): "Class(9)"} {
		if c.String() != name {
			t.Errorf("Class(%d).String() = %q, want %q", int(c), c.String(), name)
		}
	}
}

// The Hodges-Lehmann estimate equals the median of every pairwise
// difference, listed by brute force.
func TestHodgesLehmannMatchesBruteForce(t *testing.T) {
	t.Parallel()
	cases := []struct{ b, c []float64 }{
		{[]float64{1}, []float64{5}},
		{[]float64{1, 2, 3}, []float64{2, 4}},
		{[]float64{10, 10, 10, 10}, []float64{10, 10, 11}},
		{[]float64{0.1, 0.2, 0.3}, []float64{0.1, 0.2, 0.3}},
		{[]float64{-3, 7, 7, 12.5}, []float64{-1, 0, 4, 4, 9, 100}},
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for range 30 {
		cases = append(cases, struct{ b, c []float64 }{logNormal(rng, 1+rng.IntN(60), 20), logNormal(rng, 1+rng.IntN(60), 25)})
	}
	for i, tc := range cases {
		b, c := slices.Sorted(slices.Values(tc.b)), slices.Sorted(slices.Values(tc.c))
		var d []float64
		for _, x := range b {
			for _, y := range c {
				d = append(d, y-x)
			}
		}
		slices.Sort(d)
		want := d[len(d)/2]
		if len(d)%2 == 0 {
			want = (d[len(d)/2-1] + d[len(d)/2]) / 2
		}
		if got := hodgesLehmann(b, c); math.Abs(got-want) > 1e-9*max(1, math.Abs(want)) {
			t.Errorf("case %d: hodgesLehmann = %v, want %v (b=%v c=%v)", i, got, want, b, c)
		}
	}
}

// What failed a good release in CI: a short run on a loaded machine whose
// median did not move but whose tail did (p95 +35 %) is a significant rank
// difference, yet not a shift of the latencies; it passes.
func TestNoisyTailIsNotARegression(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(11, 11))
	sample := func(n int, slowShare, shift float64) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = 20 + 0.4*rng.ExpFloat64() + shift
			if rng.Float64() < slowShare {
				s[i] += 5 + 5*rng.Float64()
			}
		}
		return s
	}
	base, cur := sample(192, 0.03, 0), sample(188, 0.12, 0.05)
	r := Compare(base, cur, Options{EffectFloor: 0.3, BaselineRun: "r1"})
	t.Logf("%s", r)
	if r.P95Change < 0.3 || r.P >= 0.01 {
		t.Fatalf("the fixture should reproduce CI's case (p95 up by the 30 %% floor or more, p < 0.01): %s", r)
	}
	if r.Class != Pass || math.Abs(r.Shift) > 0.05 {
		t.Errorf("class %v, shift %v; want Pass with a shift near 0: %s", r.Class, r.Shift, r)
	}
}
