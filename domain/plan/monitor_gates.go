package plan

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"time"
)

// Gate is one metric's gate in monitor.gates: how a metric is judged during
// the watch window. The plan's `thresholds: {metric: value}` stays valid: a
// threshold is a gate {max: value} with every default.
//
//	gates:
//	  api_response_time_p95: {max: 2100, critical: 3150, for: 3 of 5, grace: 1m, no_data: fail, no_data_after: 3}
//	  throughput:            {min: 10, mode: shadow}
type Gate struct {
	// Max: a value above it breaches (the seed's `value > threshold`).
	// Min: a value below it breaches. Set one; neither takes the metric's
	// threshold (plan or seed) as Max.
	Max *float64 `yaml:"max"`
	Min *float64 `yaml:"min"`
	// Critical is the critical bound: beyond it a breach is CRITICAL, between
	// the bound and it WARNING (the seed's warning band). Default, for a gate
	// that rolls back: bound × auto_rollback.factor (÷ for a min gate);
	// otherwise none (every breach is a WARNING).
	Critical *float64 `yaml:"critical"`
	// For is "N of M": the gate fails when N of the last M samples are
	// critical (default "1 of 1"); "N" alone is N of N.
	For string `yaml:"for"`
	// Grace: samples taken in the first Grace of the window are recorded,
	// not judged.
	Grace Duration `yaml:"grace"`
	// NoData: what K missing samples in a row mean (a source error, NaN, or
	// no source reporting the metric): fail (default: a CRITICAL violation
	// that fails the gate), warn (a WARNING violation) or ignore.
	NoData string `yaml:"no_data"`
	// NoDataAfter is K, default 3.
	NoDataAfter int `yaml:"no_data_after"`
	// Mode: enforce (default) or shadow (violations recorded, never a
	// rollback). Default: the monitor's mode.
	Mode string `yaml:"mode"`
	// Rollback: a failed gate asks for a rollback. Default: the metric is in
	// auto_rollback.metrics.
	Rollback *bool `yaml:"rollback"`
}

// No-data policies and gate modes.
const (
	NoDataFail   = "fail"
	NoDataWarn   = "warn"
	NoDataIgnore = "ignore"

	ModeEnforce = "enforce"
	ModeShadow  = "shadow"

	// DefaultNoDataAfter is K: missing samples in a row before no_data acts.
	DefaultNoDataAfter = 3
	// MaxBaseline caps the default baseline window (3 intervals).
	MaxBaseline = time.Minute
)

var (
	noDataPolicies = []string{NoDataFail, NoDataWarn, NoDataIgnore}
	gateModes      = []string{ModeEnforce, ModeShadow}
	forPattern     = regexp.MustCompile(`^\s*([0-9]+)\s*(?:(?:of|/)\s*([0-9]+)\s*)?$`)
)

// ParseFor reads a gate's `for`: "3 of 5", "3/5" or "3" (3 of 3); "" is
// 1 of 1.
func ParseFor(s string) (n, m int, err error) {
	if s == "" {
		return 1, 1, nil
	}
	g := forPattern.FindStringSubmatch(s)
	if g == nil {
		return 0, 0, fmt.Errorf("%q is not N of M samples: write e.g. \"3 of 5\"", s)
	}
	n, _ = strconv.Atoi(g[1])
	m = n
	if g[2] != "" {
		m, _ = strconv.Atoi(g[2])
	}
	switch {
	case n < 1:
		return 0, 0, fmt.Errorf("%q: N must be at least 1", s)
	case m < n:
		return 0, 0, fmt.Errorf("%q: N must not be more than M", s)
	case m > 1000:
		return 0, 0, fmt.Errorf("%q: M must be at most 1000 samples", s)
	}
	return n, m, nil
}

// EffectiveBaseline is the pre-deployment baseline window: the plan's
// monitor.baseline, default 3 intervals capped at MaxBaseline; "0s" turns it
// off (the baseline is then one round at deploy.started).
func (m Monitor) EffectiveBaseline() time.Duration {
	return m.Baseline.Or(min(3*m.EffectiveInterval(), MaxBaseline))
}

// monitorGates checks monitor.gates, monitor.baseline and monitor.mode.
func (c *checker) monitorGates(m Monitor) {
	c.duration("monitor.baseline", m.Baseline, true)
	c.enum("monitor.mode", m.Mode, "a monitor mode", gateModes)
	th := m.EffectiveThresholds()
	for _, metric := range sortedKeys(m.Gates) {
		g := m.Gates[metric]
		path := joinKey("monitor.gates", metric)
		if !metricName.MatchString(metric) {
			c.errorf(path, "%q is not a metric name: use letters, digits, _ and : ", metric)
		}
		switch {
		case g.Max != nil && g.Min != nil:
			c.errorf(path, "a gate sets max or min, not both: gate the other side under another metric")
		case g.Max == nil && g.Min == nil:
			if _, ok := th[metric]; !ok {
				c.errorf(path, "a gate needs max or min (%s has no threshold to default to)", metric)
			}
		}
		for _, f := range []struct {
			name string
			v    *float64
		}{{"max", g.Max}, {"min", g.Min}, {"critical", g.Critical}} {
			if f.v != nil && (math.IsNaN(*f.v) || math.IsInf(*f.v, 0)) {
				c.errorf(joinKey(path, f.name), "%s must be a finite number", f.name)
			}
		}
		if g.Critical != nil {
			switch {
			case g.Min != nil && *g.Critical > *g.Min:
				c.errorf(joinKey(path, "critical"), "critical %v must be at or below min %v: it bounds the warning band from below", *g.Critical, *g.Min)
			case g.Min == nil && g.Max != nil && *g.Critical < *g.Max:
				c.errorf(joinKey(path, "critical"), "critical %v must be at or above max %v: it bounds the warning band from above", *g.Critical, *g.Max)
			}
		}
		if _, _, err := ParseFor(g.For); err != nil {
			c.errorf(joinKey(path, "for"), "%v", err)
		}
		c.duration(joinKey(path, "grace"), g.Grace, true)
		c.enum(joinKey(path, "no_data"), g.NoData, "a no-data policy", noDataPolicies)
		if c.set(joinKey(path, "no_data_after")) && g.NoDataAfter < 1 {
			c.errorf(joinKey(path, "no_data_after"), "no_data_after must be at least 1 missing sample (default %d)", DefaultNoDataAfter)
		}
		c.enum(joinKey(path, "mode"), g.Mode, "a gate mode", gateModes)
	}
}
