package plan

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Load-test models.
const (
	// LoadModelClosed: virtual users, each sending the iteration's requests
	// in order and then sleeping think_time (k6's constant-vus and, with
	// stages, ramping-vus). A slow target slows the load down.
	LoadModelClosed = "closed"
	// LoadModelOpen: iterations start at a constant rate whatever the
	// target does (k6's constant-arrival-rate); latency is measured from
	// the time an iteration was due, so a stalled target is not hidden.
	LoadModelOpen = "open"
)

// DefaultLoadMaxInFlight bounds the open model's iterations in flight.
const DefaultLoadMaxInFlight = 1000

// LoadStage is one ramp of the closed model: the number of virtual users
// moves linearly to Target over Duration (k6's stages).
type LoadStage struct {
	Duration Duration `yaml:"duration"`
	Target   int      `yaml:"target"`
}

// LoadRegression tunes the regression judgement of a load test against the
// last passing run of the same change (or the same target). It is on by
// default; enabled: false turns it off.
type LoadRegression struct {
	Enabled *bool `yaml:"enabled"`
	// Alpha is the significance level (default 0.01).
	Alpha float64 `yaml:"alpha"`
	// EffectFloor is the smallest shift of the latencies, relative to the
	// baseline's median (the Hodges-Lehmann estimate), that counts
	// (default 0.10 = 10 %).
	EffectFloor float64 `yaml:"effect_floor"`
}

// Defaults of the regression judgement (the tester's regress package and
// `runbook validate` both use them).
const (
	DefaultRegressionAlpha       = 0.01
	DefaultRegressionEffectFloor = 0.10
)

// EffectiveAlpha is the significance level the regression check uses.
func (r *LoadRegression) EffectiveAlpha() float64 {
	if r == nil || r.Alpha <= 0 {
		return DefaultRegressionAlpha
	}
	return r.Alpha
}

// EffectiveEffectFloor is the smallest relative change the check counts.
func (r *LoadRegression) EffectiveEffectFloor() float64 {
	if r == nil || r.EffectFloor <= 0 {
		return DefaultRegressionEffectFloor
	}
	return r.EffectFloor
}

// EffectiveModel is open when a rate is set, closed otherwise.
func (l *LoadTest) EffectiveModel() string {
	if l != nil && l.Rate > 0 {
		return LoadModelOpen
	}
	return LoadModelClosed
}

// EffectiveMaxInFlight is the open model's bound on iterations in flight.
func (l *LoadTest) EffectiveMaxInFlight() int {
	if l == nil || l.MaxInFlight <= 0 {
		return DefaultLoadMaxInFlight
	}
	return l.MaxInFlight
}

// EffectiveAbortEarly reports whether a clearly failed gate stops the test
// (default true).
func (l *LoadTest) EffectiveAbortEarly() bool {
	return l == nil || l.AbortEarly == nil || *l.AbortEarly
}

// RegressionEnabled reports whether the regression judgement runs (default
// true).
func (l *LoadTest) RegressionEnabled() bool {
	return l == nil || l.Regression == nil || l.Regression.Enabled == nil || *l.Regression.Enabled
}

// StagesDuration is the sum of the stages' durations.
func (l *LoadTest) StagesDuration() time.Duration {
	var d time.Duration
	for _, s := range l.Stages {
		d += s.Duration.Duration
	}
	return d
}

// PercentileGate is one latency gate: the Percentile-th percentile (100 is
// the maximum) must be at most MaxMS.
type PercentileGate struct {
	Key        string // as written: "p99", "p99.9", "max"
	Percentile float64
	MaxMS      float64
}

// ParsePercentileKey reads a percentile gate's key: "p<number>" with the
// number in (0, 100], or "max" (100).
func ParsePercentileKey(k string) (float64, error) {
	if k == "max" {
		return 100, nil
	}
	num, ok := strings.CutPrefix(k, "p")
	if !ok {
		return 0, fmt.Errorf("%q is not a percentile: write p50, p90, p99, p99.9 or max", k)
	}
	q, err := strconv.ParseFloat(num, 64)
	if err != nil || !(q > 0 && q <= 100) || math.IsNaN(q) {
		return 0, fmt.Errorf("%q is not a percentile: the number after p must be more than 0 and at most 100 (p99.9)", k)
	}
	return q, nil
}

// PercentileGates are gates.percentiles, by percentile. Keys that do not
// parse are left out (Validate reports them).
func (g LoadGates) PercentileGates() []PercentileGate {
	var out []PercentileGate
	for k, ms := range g.Percentiles {
		q, err := ParsePercentileKey(k)
		if err != nil {
			continue
		}
		out = append(out, PercentileGate{Key: k, Percentile: q, MaxMS: ms})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Percentile < out[j].Percentile })
	return out
}

// loadModel checks the load model's fields (called from checker.test).
func (c *checker) loadModel(l *LoadTest) {
	if len(l.Stages) > 0 {
		if c.set("test.load.duration") || c.set("test.load.vus") {
			c.errorf("test.load.stages", "stages replace vus and duration: write either stages or vus and duration")
		}
		for i, s := range l.Stages {
			p := joinIndex("test.load.stages", i)
			c.duration(joinKey(p, "duration"), s.Duration, false)
			if !c.set(joinKey(p, "duration")) {
				c.errorf(joinKey(p, "duration"), "a stage needs a duration, e.g. 30s")
			}
			if s.Target < 0 {
				c.errorf(joinKey(p, "target"), "target %d must be 0 or more virtual users", s.Target)
			}
		}
		if l.maxStageTarget() == 0 {
			c.errorf("test.load.stages", "every stage's target is 0: no virtual user would run")
		}
	}
	if c.set("test.load.rate") {
		switch {
		case !(l.Rate > 0) || math.IsInf(l.Rate, 0):
			c.errorf("test.load.rate", "rate must be more than 0 iterations per second")
		case len(l.Stages) > 0 || c.set("test.load.vus"):
			c.errorf("test.load.rate", "rate selects the open model (iterations per second): it takes no vus or stages (bound it with max_in_flight)")
		case c.set("test.load.think_time"):
			c.errorf("test.load.think_time", "the open model (rate) has no think time: iterations start at the rate")
		}
	}
	if c.set("test.load.max_in_flight") {
		if l.MaxInFlight <= 0 {
			c.errorf("test.load.max_in_flight", "max_in_flight must be more than 0 (default %d)", DefaultLoadMaxInFlight)
		} else if l.Rate <= 0 {
			c.errorf("test.load.max_in_flight", "max_in_flight bounds the open model: set rate too, or leave it out")
		}
	}
	for k, ms := range l.Gates.Percentiles {
		p := joinKey("test.load.gates.percentiles", k)
		if _, err := ParsePercentileKey(k); err != nil {
			c.errorf(p, "%v", err)
		} else if !(ms > 0) || math.IsInf(ms, 0) {
			c.errorf(p, "%s must be more than 0 milliseconds", k)
		}
	}
	if r := l.Regression; r != nil {
		if r.Alpha != 0 && !(r.Alpha > 0 && r.Alpha < 1) {
			c.errorf("test.load.regression.alpha", "alpha %v must be more than 0 and less than 1 (default 0.01)", r.Alpha)
		}
		if r.EffectFloor < 0 || math.IsInf(r.EffectFloor, 0) {
			c.errorf("test.load.regression.effect_floor", "effect_floor %v must be a positive fraction (0.1 = 10 %%)", r.EffectFloor)
		}
	}
	seen := map[string]bool{}
	for i, r := range l.Requests {
		if r.Name == "" {
			continue
		}
		if seen[r.Name] {
			c.errorf(joinKey(joinIndex("test.load.requests", i), "name"), "name %q is used twice: request names must differ", r.Name)
		}
		seen[r.Name] = true
	}
}

func (l *LoadTest) maxStageTarget() int {
	m := 0
	for _, s := range l.Stages {
		m = max(m, s.Target)
	}
	return m
}
