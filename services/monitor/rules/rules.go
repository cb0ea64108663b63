// Package rules is the monitor's judgement: which sampled values breach a
// threshold, how severe a breach is, and when the seed's auto-rollback rule
// (shouldAutoRollback: an auto-rollback metric above 150 % of its threshold)
// holds. It is pure: no NATS, no clock, no I/O.
package rules

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/kis-core/runbook/domain/plan"
)

// Metric names the monitor's sources report (the plan's names). Latency
// is in milliseconds, the error rate a fraction (0.01 = 1 %).
const (
	MetricP95         = plan.MetricP95
	MetricErrorRate   = plan.MetricErrorRate
	MetricCPU         = plan.MetricCPU
	MetricMemory      = plan.MetricMemory
	MetricConnections = plan.MetricActiveConnections
)

// Severities of a breach, as the seed names them.
const (
	SeverityWarning  = "WARNING"
	SeverityCritical = "CRITICAL"
)

// DefaultFactor is the seed's 150 % rule.
const DefaultFactor = plan.DefaultAutoRollbackFactor

// Rules are the thresholds of one watch window.
type Rules struct {
	// Thresholds: a value strictly above its metric's threshold is a breach.
	// Metrics without a threshold are recorded, never judged.
	Thresholds map[string]float64
	// AutoRollback lists the metrics whose breach beyond Threshold×Factor
	// asks for a rollback.
	AutoRollback []string
	Factor       float64
}

// Default are the seed's rules: its five thresholds, auto-rollback on p95
// and error rate beyond 150 %.
func Default() Rules { return FromPlan(plan.Monitor{}) }

// FromPlan is the rules of a plan's monitor section, with the plan's
// defaults (domain/plan's Effective* methods, so that `runbook validate`
// and the monitor cannot disagree): the plan's thresholds over the seed's
// five, its auto_rollback metrics (default p95 and error rate; an explicit
// empty list turns auto-rollback off) and factor (default 1.5).
func FromPlan(m plan.Monitor) Rules {
	return Rules{
		Thresholds:   m.EffectiveThresholds(),
		AutoRollback: m.AutoRollback.EffectiveMetrics(),
		Factor:       m.AutoRollback.EffectiveFactor(),
	}
}

// Violation is one breach of a threshold.
type Violation struct {
	Metric    string
	Value     float64
	Threshold float64
	// Severity is CRITICAL when the value is beyond Threshold×Factor on an
	// auto-rollback metric, WARNING otherwise.
	Severity string
	// AutoRollback: the metric is one of the auto-rollback metrics.
	AutoRollback bool
	// Rollback: the seed's rule holds for this breach — ask for a rollback.
	Rollback bool
}

// IsAutoRollback reports whether metric is an auto-rollback metric.
func (r Rules) IsAutoRollback(metric string) bool {
	return slices.Contains(r.AutoRollback, metric)
}

func (r Rules) factor() float64 {
	if r.Factor > 0 {
		return r.Factor
	}
	return DefaultFactor
}

// Check judges one value of metric: the breach and true when value is above
// the metric's threshold (the seed's `value > threshold`). NaN and metrics
// without a threshold are never a breach.
func (r Rules) Check(metric string, value float64) (Violation, bool) {
	threshold, ok := r.Thresholds[metric]
	if !ok || math.IsNaN(value) || !(value > threshold) {
		return Violation{}, false
	}
	v := Violation{Metric: metric, Value: value, Threshold: threshold, Severity: SeverityWarning, AutoRollback: r.IsAutoRollback(metric)}
	if v.AutoRollback && value > threshold*r.factor() {
		v.Severity = SeverityCritical
		v.Rollback = true
	}
	return v, true
}

// Evaluate judges a round of values, one per metric, and returns the
// breaches in metric order (deterministic, so event ids and logs are too).
func (r Rules) Evaluate(values map[string]float64) []Violation {
	var out []Violation
	for _, metric := range slices.Sorted(maps.Keys(values)) {
		if v, ok := r.Check(metric, values[metric]); ok {
			out = append(out, v)
		}
	}
	return out
}

// ShouldAutoRollback is the seed's shouldAutoRollback: the first breach of
// an auto-rollback metric beyond Threshold×Factor, if any.
func (r Rules) ShouldAutoRollback(vs []Violation) (Violation, bool) {
	for _, v := range vs {
		if r.IsAutoRollback(v.Metric) && v.Value > v.Threshold*r.factor() {
			return v, true
		}
	}
	return Violation{}, false
}

// Reason is the human sentence of a rollback asked for by v, e.g.
// "error_rate 4.5% exceeds 150% of its threshold 1% (limit 1.5%)".
func (r Rules) Reason(v Violation) string {
	return fmt.Sprintf("%s %s exceeds %s%% of its threshold %s (limit %s)",
		v.Metric, Format(v.Metric, v.Value), strconv.FormatFloat(r.factor()*100, 'f', -1, 64),
		Format(v.Metric, v.Threshold), Format(v.Metric, v.Threshold*r.factor()))
}

// Format writes a value of metric in its one unit (plan.FormatMetric, the
// function every printout uses): "2350ms", "4.5%", "81%".
func Format(metric string, v float64) string { return plan.FormatMetric(metric, v) }
