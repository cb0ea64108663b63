// Package regress decides whether a load test's latencies regressed against
// an earlier run's: a two-sided Mann-Whitney U test (ranks, so the long tail
// of latencies does not dominate) with an effect-size floor, classified the
// way Kayenta's Mann-Whitney classifier does — High (significantly slower),
// Low (significantly faster) or Pass. It is pure: no network, no clock, no
// randomness.
//
// A difference is reported High or Low only when it is both significant
// (p < Alpha) and large: the Hodges-Lehmann estimate of the shift — the
// median of every current − baseline difference, the location shift the
// Mann-Whitney test is about, and the centre of Kayenta's confidence
// interval — is at least EffectFloor of the baseline's median, in the
// direction of the test. With thousands of requests a 2 % change is
// "significant" but not a regression anyone should be paged for.
//
// The effect is a location shift on purpose. An earlier rule also counted a
// p95 move as the effect; on a loaded machine the p95 of a short run jumps
// by a third while the median does not move (seen in CI: median +0.4 %,
// p95 +35 %, p = 0.006), so significance of a tiny location change paired
// with a tail that noise moved, and the gate failed a good release. A tail
// that really got slower is the absolute thresholds' job (p95 ≤ 2100 ms);
// the message still shows the p95 and median changes beside the shift.
package regress

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/kis-core/runbook/domain/plan"
)

// Defaults of Options (the plan's, so `runbook validate` shows what runs).
const (
	DefaultAlpha       = plan.DefaultRegressionAlpha
	DefaultEffectFloor = plan.DefaultRegressionEffectFloor
	DefaultMinSamples  = 8
)

// Options tune Compare. Zero values take the defaults.
type Options struct {
	// Alpha is the significance level of the two-sided test (default 0.01).
	Alpha float64
	// EffectFloor is the smallest relative change of the median or the p95
	// that counts (default 0.10, i.e. 10 %).
	EffectFloor float64
	// MinSamples is the fewest samples each side needs (default 8).
	MinSamples int
	// BaselineRun names the run the baseline samples come from, for the
	// message ("vs run X").
	BaselineRun string
}

func (o Options) withDefaults() Options {
	if o.Alpha == 0 {
		o.Alpha = DefaultAlpha
	}
	if o.EffectFloor == 0 {
		o.EffectFloor = DefaultEffectFloor
	}
	if o.MinSamples == 0 {
		o.MinSamples = DefaultMinSamples
	}
	return o
}

// Validate reports the first option that is out of range (zero values are
// valid: they take the defaults).
func (o Options) Validate() error {
	o = o.withDefaults()
	switch {
	case !(o.Alpha > 0 && o.Alpha < 1):
		return fmt.Errorf("regress: options: alpha %v not in (0, 1)", o.Alpha)
	case !(o.EffectFloor > 0) || math.IsInf(o.EffectFloor, 0):
		return fmt.Errorf("regress: options: effect floor %v must be a positive fraction (0.1 = 10 %%)", o.EffectFloor)
	case o.MinSamples < 2:
		return fmt.Errorf("regress: options: min samples %d must be at least 2", o.MinSamples)
	}
	return nil
}

// Class is the classification of a comparison.
type Class int

// The classes. Only High fails a gate; NoBaseline, NotEnoughSamples and
// Invalid say that no comparison was made, which is never a Pass.
const (
	// Invalid: bad options or a sample that is NaN or infinite.
	Invalid Class = iota
	// NoBaseline: there was no earlier run to compare with.
	NoBaseline
	// NotEnoughSamples: a side has fewer than MinSamples samples.
	NotEnoughSamples
	// Pass: no significant change at least EffectFloor large.
	Pass
	// High: the current run is significantly slower (a regression).
	High
	// Low: the current run is significantly faster.
	Low
)

var classNames = [...]string{"Invalid", "NoBaseline", "NotEnoughSamples", "Pass", "High", "Low"}

// String names the class as Kayenta does (High, Low, Pass) and the
// non-comparisons by what happened.
func (c Class) String() string {
	if c < 0 || int(c) >= len(classNames) {
		return fmt.Sprintf("Class(%d)", int(c))
	}
	return classNames[c]
}

// Stats describe one side of a comparison, in the samples' unit.
type Stats struct {
	N      int
	Median float64
	P95    float64
}

// Result is the outcome of Compare.
type Result struct {
	Class Class
	// Reason explains a non-comparison (Invalid, NoBaseline,
	// NotEnoughSamples); "" otherwise.
	Reason      string
	BaselineRun string
	Baseline    Stats
	Current     Stats
	// MedianChange and P95Change are current/baseline − 1 (0.31 = +31 %);
	// NaN when the baseline's statistic is 0.
	MedianChange float64
	P95Change    float64
	// Shift is the Hodges-Lehmann shift estimate (the median of all
	// current − baseline differences) relative to the baseline's median:
	// the effect that is held against EffectFloor. NaN when the baseline's
	// median is 0.
	Shift float64
	// U is the Mann-Whitney statistic of the current samples: the number of
	// (baseline, current) pairs in which the current sample is larger, ties
	// counting one half. Its mean under "no change" is N₁N₂/2.
	U float64
	// Z is the standardised U (tie- and continuity-corrected); positive
	// when the current run is slower.
	Z float64
	// P is the two-sided p-value of the normal approximation.
	P           float64
	Alpha       float64
	EffectFloor float64
}

// Regressed reports whether the comparison fails a gate: High only.
func (r Result) Regressed() bool { return r.Class == High }

// Compared reports whether a comparison was made (Pass, High or Low).
func (r Result) Compared() bool { return r.Class >= Pass }

// String is one line for a gate's reason or a log, e.g.
//
//	regression: p95 +31 % vs run r-12, p < 0.01 (median +30 %, shift +29 %; Mann-Whitney U=27512, n=200/200, p=2.1e-09)
func (r Result) String() string {
	switch r.Class {
	case Invalid, NoBaseline, NotEnoughSamples:
		return r.Reason
	}
	var b strings.Builder
	switch r.Class {
	case High:
		b.WriteString("regression: ")
	case Low:
		b.WriteString("improvement: ")
	default:
		b.WriteString("no regression: ")
	}
	// The p95 leads, as operators read latency; when it moved against
	// the shift that decided (a tail that noise moved), the shift leads.
	p95Leads := true
	switch r.Class {
	case High:
		p95Leads = r.P95Change > 0
	case Low:
		p95Leads = r.P95Change < 0
	}
	if p95Leads {
		fmt.Fprintf(&b, "p95 %s vs %s, ", pct(r.P95Change), r.runName())
	} else {
		fmt.Fprintf(&b, "latency shift %s vs %s, ", pct(r.Shift), r.runName())
	}
	if r.P < r.Alpha {
		fmt.Fprintf(&b, "p < %g", r.Alpha)
	} else {
		fmt.Fprintf(&b, "p = %.2g", r.P)
	}
	if p95Leads {
		fmt.Fprintf(&b, " (median %s, shift %s", pct(r.MedianChange), pct(r.Shift))
	} else {
		fmt.Fprintf(&b, " (median %s, p95 %s", pct(r.MedianChange), pct(r.P95Change))
	}
	fmt.Fprintf(&b, "; Mann-Whitney U=%g, n=%d/%d, p=%.2g", r.U, r.Baseline.N, r.Current.N, r.P)
	if r.Class == Pass && r.P < r.Alpha {
		fmt.Fprintf(&b, "; significant but below the %s effect floor", pct0(r.EffectFloor))
	}
	b.WriteString(")")
	return b.String()
}

func (r Result) runName() string {
	if r.BaselineRun == "" {
		return "the baseline run"
	}
	return "run " + r.BaselineRun
}

// pct formats a relative change with its sign: +31 %, -4 %, +0.4 %.
func pct(f float64) string {
	switch {
	case math.IsNaN(f):
		return "n/a"
	case math.Abs(f) < 0.01:
		return fmt.Sprintf("%+.1f %%", f*100)
	}
	return fmt.Sprintf("%+.0f %%", f*100)
}

func pct0(f float64) string { return fmt.Sprintf("%g %%", f*100) }

// Compare tests whether current's latencies differ from baseline's. An empty
// baseline gives NoBaseline, too few samples NotEnoughSamples, bad options
// or non-finite samples Invalid — never Pass. The inputs are not modified.
func Compare(baseline, current []float64, o Options) Result {
	o = o.withDefaults()
	r := Result{BaselineRun: o.BaselineRun, Alpha: o.Alpha, EffectFloor: o.EffectFloor,
		MedianChange: math.NaN(), P95Change: math.NaN(), Shift: math.NaN(), P: math.NaN(), Z: math.NaN(), U: math.NaN()}
	if err := o.Validate(); err != nil {
		r.Reason = err.Error()
		return r
	}
	for _, side := range []struct {
		name string
		s    []float64
	}{{"baseline", baseline}, {"current", current}} {
		for i, v := range side.s {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				r.Reason = fmt.Sprintf("regress: %s sample %d is %v: latencies must be finite", side.name, i, v)
				return r
			}
		}
	}
	b, c := slices.Clone(baseline), slices.Clone(current)
	slices.Sort(b)
	slices.Sort(c)
	r.Baseline, r.Current = stats(b), stats(c)
	if len(b) == 0 {
		r.Class = NoBaseline
		r.Reason = "no baseline: no earlier successful run to compare with; regression not checked"
		if o.BaselineRun != "" {
			r.Reason = fmt.Sprintf("no baseline: run %s has no latency samples; regression not checked", o.BaselineRun)
		}
		return r
	}
	if len(b) < o.MinSamples || len(c) < o.MinSamples {
		r.Class = NotEnoughSamples
		r.Reason = fmt.Sprintf("not enough samples: %s has %d, this run %d (need %d each); regression not checked",
			r.runName(), len(b), len(c), o.MinSamples)
		return r
	}
	r.MedianChange = change(r.Current.Median, r.Baseline.Median)
	r.P95Change = change(r.Current.P95, r.Baseline.P95)
	r.Shift = math.NaN()
	if r.Baseline.Median != 0 {
		r.Shift = hodgesLehmann(b, c) / r.Baseline.Median
	}
	r.U, r.Z, r.P = mannWhitney(b, c)

	r.Class = Pass
	if r.P < o.Alpha {
		// The shift, in the direction of the test, must clear the floor
		// (a NaN shift never does).
		switch {
		case r.Z > 0 && r.Shift >= o.EffectFloor:
			r.Class = High
		case r.Z < 0 && r.Shift <= -o.EffectFloor:
			r.Class = Low
		}
	}
	return r
}

// hodgesLehmann returns the median of the len(b)·len(c) differences
// c[j] − b[i] of two sorted, non-empty slices without listing them: it
// bisects on the value, counting the differences at or below a candidate
// with one merge-like pass (O(len(b)+len(c)) per step), until the interval
// is down to adjacent floats.
func hodgesLehmann(b, c []float64) float64 {
	n := int64(len(b)) * int64(len(c))
	kth := func(k int64) float64 { // the k-th smallest difference, 1-based
		lo, hi := c[0]-b[len(b)-1], c[len(c)-1]-b[0]
		if countAtMost(b, c, lo) >= k {
			return lo
		}
		// Invariant: count(lo) < k ≤ count(hi).
		for range 200 {
			mid := lo + (hi-lo)/2
			if mid <= lo || mid >= hi {
				break
			}
			if countAtMost(b, c, mid) >= k {
				hi = mid
			} else {
				lo = mid
			}
		}
		return hi
	}
	if n%2 == 1 {
		return kth(n/2 + 1)
	}
	return (kth(n/2) + kth(n/2+1)) / 2
}

// countAtMost counts the pairs with c[j] − b[i] ≤ d, i.e. b[i] ≥ c[j] − d,
// for sorted b and c: as c[j] − d grows with j the first such i only moves
// right.
func countAtMost(b, c []float64, d float64) int64 {
	var count int64
	i := 0
	for _, cj := range c {
		for i < len(b) && b[i] < cj-d {
			i++
		}
		count += int64(len(b) - i)
	}
	return count
}

func change(cur, base float64) float64 {
	if base == 0 {
		return math.NaN()
	}
	return cur/base - 1
}

func stats(sorted []float64) Stats {
	return Stats{N: len(sorted), Median: Quantile(sorted, 0.5), P95: Quantile(sorted, 0.95)}
}

// Quantile is the q-th quantile (0 ≤ q ≤ 1) of sorted samples, linearly
// interpolated between closest ranks (R's type 7, NumPy's default). It is 0
// for no samples.
func Quantile(sorted []float64, q float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	h := q * float64(n-1)
	lo := int(math.Floor(h))
	if lo >= n-1 {
		return sorted[n-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// mannWhitney returns U of c (c's rank sum minus its minimum), the
// tie- and continuity-corrected z (positive when c is larger) and the
// two-sided p-value of the normal approximation. Both slices are sorted.
// With every value equal there is no evidence of a difference: z 0, p 1.
func mannWhitney(b, c []float64) (u, z, p float64) {
	n1, n2 := float64(len(b)), float64(len(c))
	n := n1 + n2
	// Merge the sorted sides, giving each run of ties the mean of its ranks.
	var rankSumC, ties float64
	i, j, rank := 0, 0, 1.0
	for i < len(b) || j < len(c) {
		v := math.Inf(1)
		if i < len(b) {
			v = b[i]
		}
		if j < len(c) && c[j] < v {
			v = c[j]
		}
		tb, tc := 0, 0
		for i < len(b) && b[i] == v {
			i++
			tb++
		}
		for j < len(c) && c[j] == v {
			j++
			tc++
		}
		t := float64(tb + tc)
		mid := rank + (t-1)/2
		rankSumC += float64(tc) * mid
		ties += t*t*t - t
		rank += t
	}
	u = rankSumC - n2*(n2+1)/2
	mu := n1 * n2 / 2
	sigma := math.Sqrt(n1 * n2 / 12 * ((n + 1) - ties/(n*(n-1))))
	d := u - mu
	if sigma == 0 {
		return u, 0, 1
	}
	// Continuity correction: move |U − μ| half a step towards 0.
	z = math.Copysign(max(math.Abs(d)-0.5, 0), d) / sigma
	p = min(math.Erfc(math.Abs(z)/math.Sqrt2), 1) // 2·(1 − Φ(|z|))
	return u, z, p
}
