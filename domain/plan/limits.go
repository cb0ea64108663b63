package plan

import (
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Limit is one gated metric's effective limits: everything the monitor
// enforces, the dashboard draws, the report and the QC summary judge
// against and `runbook validate` prints. Monitor.Limits is its only
// source; no reader recomputes a bound or the auto-rollback factor.
type Limit struct {
	Metric string
	// Unit is the metric's unit (MetricUnit): ms, fraction, %, bytes or
	// "" for a count.
	Unit string
	// Threshold is the gate's bound: a value above it breaches (a max
	// gate), or below it when Below (a min gate). A breach is a WARNING
	// until it passes Critical.
	Threshold float64
	Below     bool
	// Critical is the critical bound, when HasCritical: beyond it a sample
	// is CRITICAL and counts towards N of M. It is the plan's `critical`,
	// else, for a gate that rolls back, Threshold × Factor (÷ for a min
	// gate): Derived. A gate without one counts every breach.
	Critical    float64
	HasCritical bool
	Derived     bool
	// Factor is monitor.auto_rollback.factor (default 1.5), what a derived
	// Critical comes from.
	Factor float64
	// N of the last M samples beyond the limit fail the gate.
	N, M int
	// Grace: samples taken in the first Grace of the window are recorded,
	// not judged.
	Grace time.Duration
	// NoData is the policy (fail, warn, ignore) after NoDataAfter missing
	// samples in a row.
	NoData      string
	NoDataAfter int
	// Rollback: a failed gate asks for a rollback; Shadow: it is recorded
	// as "would have rolled back" and nothing is rolled back.
	Rollback bool
	Shadow   bool
	// Explicit: named in monitor.gates, so the metric is expected from the
	// first sample (a metric with only a threshold is expected once a
	// source has reported it).
	Explicit bool
}

// Limits are the limits of every metric with a threshold (the seed's five,
// the plan's monitor.thresholds) or a gate (monitor.gates), defaults filled
// in, sorted by metric. A gate that does not parse (see validation) takes
// the defaults of what it got wrong.
func (m Monitor) Limits() []Limit {
	th := m.EffectiveThresholds()
	auto := m.AutoRollback.EffectiveMetrics()
	factor := m.AutoRollback.EffectiveFactor()
	metrics := make([]string, 0, len(th)+len(m.Gates))
	for k := range th {
		metrics = append(metrics, k)
	}
	for k := range m.Gates {
		if _, ok := th[k]; !ok {
			metrics = append(metrics, k)
		}
	}
	slices.Sort(metrics)
	out := make([]Limit, 0, len(metrics))
	for _, metric := range metrics {
		l := Limit{Metric: metric, Unit: MetricUnit(metric).Name, Threshold: th[metric], Factor: factor, N: 1, M: 1,
			NoData: NoDataFail, NoDataAfter: DefaultNoDataAfter, Shadow: m.Mode == ModeShadow, Rollback: slices.Contains(auto, metric)}
		pg, gated := m.Gates[metric]
		if gated {
			l.Explicit = true
			switch {
			case pg.Max != nil:
				l.Threshold = *pg.Max
			case pg.Min != nil:
				l.Threshold, l.Below = *pg.Min, true
			}
			if pg.Rollback != nil {
				l.Rollback = *pg.Rollback
			}
			if n, mm, err := ParseFor(pg.For); err == nil {
				l.N, l.M = n, mm
			}
			l.Grace = pg.Grace.Duration
			if pg.NoData != "" {
				l.NoData = pg.NoData
			}
			if pg.NoDataAfter > 0 {
				l.NoDataAfter = pg.NoDataAfter
			}
			switch pg.Mode {
			case ModeShadow:
				l.Shadow = true
			case ModeEnforce:
				l.Shadow = false
			}
		}
		switch {
		case gated && pg.Critical != nil:
			l.Critical, l.HasCritical = *pg.Critical, true
		case l.Rollback && l.Below:
			l.Critical, l.HasCritical, l.Derived = l.Threshold/factor, true, true
		case l.Rollback:
			l.Critical, l.HasCritical, l.Derived = l.Threshold*factor, true, true
		}
		out = append(out, l)
	}
	return out
}

// LimitOf is Limits' entry of metric.
func (m Monitor) LimitOf(metric string) (Limit, bool) {
	for _, l := range m.Limits() {
		if l.Metric == metric {
			return l, true
		}
	}
	return Limit{}, false
}

// Breaches reports whether v is beyond the threshold (the seed's
// `value > threshold`; below it for a min gate). NaN never breaches.
func (l Limit) Breaches(v float64) bool {
	if l.Below {
		return v < l.Threshold
	}
	return v > l.Threshold
}

// IsCritical reports whether v is beyond the critical bound (never, without
// one).
func (l Limit) IsCritical(v float64) bool {
	if !l.HasCritical {
		return false
	}
	if l.Below {
		return v < l.Critical
	}
	return v > l.Critical
}

// Counts reports whether v counts towards N of M: beyond the critical
// bound when the gate has one, beyond the threshold otherwise (Bound).
func (l Limit) Counts(v float64) bool {
	if l.HasCritical {
		return l.IsCritical(v)
	}
	return l.Breaches(v)
}

// Bound is the value past which a sample counts towards N of M: Critical
// when the gate has one, else Threshold. Past it for N of M samples the
// gate fails (and rolls back, when Rollback).
func (l Limit) Bound() float64 {
	if l.HasCritical {
		return l.Critical
	}
	return l.Threshold
}

// Rule is the gate's failing condition in words, e.g.
// "api_response_time_p95 > 3150 for 3 of 5 samples".
func (l Limit) Rule() string {
	op := ">"
	if l.Below {
		op = "<"
	}
	s := fmt.Sprintf("%s %s %s", l.Metric, op, strconv.FormatFloat(l.Bound(), 'f', -1, 64))
	if l.N == 1 && l.M == 1 {
		return s
	}
	return fmt.Sprintf("%s for %d of %d samples", s, l.N, l.M)
}

// Cite is the limit in a few words for a summary line, e.g. "threshold
// 2100ms, rollback above 3150ms", "minimum 10, rollback below 5 for 3 of 5
// samples", "threshold 80%, no rollback", or in shadow mode "threshold
// 1%, would roll back above 1.5% (shadow)".
func (l Limit) Cite() string {
	side, dir := "threshold", "above"
	if l.Below {
		side, dir = "minimum", "below"
	}
	s := side + " " + FormatMetric(l.Metric, l.Threshold)
	nOfM := ""
	if l.N != 1 || l.M != 1 {
		nOfM = fmt.Sprintf(" for %d of %d samples", l.N, l.M)
	}
	switch {
	case l.Rollback && l.Shadow:
		return s + ", would roll back " + dir + " " + FormatMetric(l.Metric, l.Bound()) + nOfM + " (shadow)"
	case l.Rollback:
		return s + ", rollback " + dir + " " + FormatMetric(l.Metric, l.Bound()) + nOfM
	case l.HasCritical:
		return s + ", critical " + dir + " " + FormatMetric(l.Metric, l.Critical) + ", no rollback"
	}
	return s + ", no rollback"
}

// Unit names of the metrics (MetricUnit(...).Name).
const (
	UnitMS       = "ms"
	UnitFraction = "fraction" // 0.01 = 1 %, printed as a percentage
	UnitPercent  = "%"
	UnitBytes    = "bytes"
)
