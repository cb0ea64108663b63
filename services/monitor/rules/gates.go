package rules

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

// AlertPrefix starts the metric names of alert samples (an alert firing is
// a sample; its absence is not missing data).
const AlertPrefix = "alert:"

// Judge holds the gates of one watch window and their N-of-M windows. It
// is fed one tick at a time (Observe) and says, per gated metric, whether
// the tick breached, whether the gate failed, and whether to roll back.
// Pure: the caller supplies the time since the window's start.
type Judge struct {
	gates  map[string]plan.EffectiveGate
	state  map[string]*gateState
	factor float64
}

type gateState struct {
	window  []float64 // last M judged values, oldest first (NaN: no sample)
	seen    bool      // a source has reported the metric (baseline or window)
	missing int       // missing ticks in a row
}

// NewJudge makes the judge of a plan's monitor section (plan.Monitor's
// EffectiveGates, so `runbook validate` and the monitor agree).
func NewJudge(m plan.Monitor) *Judge {
	return NewJudgeOf(m.EffectiveGates(), m.AutoRollback.EffectiveFactor())
}

// NewJudgeOf makes a judge of gates; factor is the auto-rollback factor
// (for the reason's wording).
func NewJudgeOf(gates map[string]plan.EffectiveGate, factor float64) *Judge {
	j := &Judge{gates: gates, state: map[string]*gateState{}, factor: factor}
	for m := range gates {
		j.state[m] = &gateState{}
	}
	return j
}

// Gate returns the effective gate of metric.
func (j *Judge) Gate(metric string) (plan.EffectiveGate, bool) {
	g, ok := j.gates[metric]
	return g, ok
}

// Metrics are the gated metrics, sorted.
func (j *Judge) Metrics() []string { return slices.Sorted(maps.Keys(j.gates)) }

// Seen marks metrics as reported (e.g. by the baseline): from now on a tick
// without them is missing data.
func (j *Judge) Seen(metrics ...string) {
	for _, m := range metrics {
		if st, ok := j.state[m]; ok {
			st.seen = true
		}
	}
}

// Expected reports whether a tick without metric counts as missing: its
// gate is explicit in the plan, or a source has reported it. Alert metrics
// are never expected.
func (j *Judge) Expected(metric string) bool {
	g, ok := j.gates[metric]
	if !ok || strings.HasPrefix(metric, AlertPrefix) {
		return false
	}
	return g.Explicit || j.state[metric].seen
}

// Decision is the judgement of one gated metric in one tick: a breach (or
// missing data the policy does not ignore).
type Decision struct {
	Metric    string
	Value     float64 // NaN when NoData
	Threshold float64 // the gate's bound
	Below     bool
	Severity  string
	NoData    bool
	// The N-of-M window: critical samples in it, M, N, the values (oldest
	// first, NaN: none).
	Critical, Size, Needed int
	Window                 []float64
	// GateFailed: N of M held (or no_data: fail).
	GateFailed bool
	Shadow     bool
	// AutoRollback: the gate may roll back.
	AutoRollback bool
	// Rollback: ask for a rollback now (gate failed, rolls back, enforced).
	// WouldRollback: the same in shadow mode.
	Rollback, WouldRollback bool
	// Rule is the gate's failing condition in words.
	Rule string
}

// Observe judges one tick. values holds the tick's value of each metric
// (absent or NaN: no sample). elapsed is the time since the window's start
// (for grace). Decisions come in metric order.
func (j *Judge) Observe(elapsed time.Duration, values map[string]float64) []Decision {
	for m, v := range values {
		if st, ok := j.state[m]; ok && !math.IsNaN(v) {
			st.seen = true
		}
	}
	var out []Decision
	for _, metric := range slices.Sorted(maps.Keys(j.gates)) {
		g, st := j.gates[metric], j.state[metric]
		if elapsed < g.Grace {
			continue // recorded, not judged
		}
		v, ok := values[metric]
		if !ok || math.IsNaN(v) {
			if !j.Expected(metric) {
				continue
			}
			st.push(math.NaN(), g.M)
			st.missing++
			if g.NoData == plan.NoDataIgnore || st.missing < g.NoDataAfter {
				continue
			}
			d := j.decision(g, st, math.NaN())
			d.NoData = true
			d.Severity = SeverityWarning
			if g.NoData == plan.NoDataFail {
				d.Severity = SeverityCritical
				d.GateFailed = true
			}
			d.Rule = fmt.Sprintf("%s has had no data for %d samples in a row (no_data: %s after %d)", metric, st.missing, g.NoData, g.NoDataAfter)
			j.rollback(g, &d)
			out = append(out, d)
			continue
		}
		st.missing = 0
		st.push(v, g.M)
		if !breaches(g, v) {
			continue
		}
		d := j.decision(g, st, v)
		d.Severity = SeverityWarning
		if critical(g, v) {
			d.Severity = SeverityCritical
		}
		d.GateFailed = d.Critical >= g.N
		j.rollback(g, &d)
		out = append(out, d)
	}
	return out
}

func (j *Judge) decision(g plan.EffectiveGate, st *gateState, v float64) Decision {
	n := 0
	for _, x := range st.window {
		if !math.IsNaN(x) && counts(g, x) {
			n++
		}
	}
	return Decision{Metric: g.Metric, Value: v, Threshold: g.Bound, Below: g.Below, Critical: n, Size: g.M, Needed: g.N,
		Window: slices.Clone(st.window), Shadow: g.Shadow, AutoRollback: g.Rollback, Rule: g.Rule()}
}

func (j *Judge) rollback(g plan.EffectiveGate, d *Decision) {
	if !d.GateFailed || !g.Rollback {
		return
	}
	if g.Shadow {
		d.WouldRollback = true
	} else {
		d.Rollback = true
	}
}

func (st *gateState) push(v float64, m int) {
	st.window = append(st.window, v)
	if len(st.window) > m {
		st.window = st.window[len(st.window)-m:]
	}
}

// breaches: v is beyond the gate's bound (the seed's value > threshold).
func breaches(g plan.EffectiveGate, v float64) bool {
	if g.Below {
		return v < g.Bound
	}
	return v > g.Bound
}

// critical: v is beyond the critical bound.
func critical(g plan.EffectiveGate, v float64) bool {
	if !g.HasCritical {
		return false
	}
	if g.Below {
		return v < g.Critical
	}
	return v > g.Critical
}

// counts: v counts towards N of M: critical when the gate has a critical
// bound, any breach otherwise.
func counts(g plan.EffectiveGate, v float64) bool {
	if g.HasCritical {
		return critical(g, v)
	}
	return breaches(g, v)
}

// Explain is the sentence of a failed gate for rollback.requested and the
// report, e.g. "error_rate 4.5% exceeds 150% of its threshold 1% (limit
// 1.5%)" or "... for 3 of 5 samples (2400ms, 3500ms, …)".
func (j *Judge) Explain(d Decision) string {
	if d.NoData || IsAlert(d.Metric) {
		return d.Rule
	}
	g := j.gates[d.Metric]
	var s string
	switch {
	case g.Below:
		s = fmt.Sprintf("%s %s is below its critical bound %s (threshold %s)", d.Metric, Format(d.Metric, d.Value), Format(d.Metric, g.Critical), Format(d.Metric, g.Bound))
	case g.HasCritical && sameFloat(g.Critical, g.Bound*j.factorOr()):
		s = fmt.Sprintf("%s %s exceeds %s%% of its threshold %s (limit %s)", d.Metric, Format(d.Metric, d.Value),
			strconv.FormatFloat(j.factorOr()*100, 'f', -1, 64), Format(d.Metric, g.Bound), Format(d.Metric, g.Critical))
	default:
		s = fmt.Sprintf("%s %s exceeds its critical bound %s (threshold %s)", d.Metric, Format(d.Metric, d.Value), Format(d.Metric, g.Critical), Format(d.Metric, g.Bound))
	}
	if g.M > 1 {
		vals := make([]string, len(d.Window))
		for i, x := range d.Window {
			if math.IsNaN(x) {
				vals[i] = "no data"
			} else {
				vals[i] = Format(d.Metric, x)
			}
		}
		s += fmt.Sprintf(" for %d of the last %d samples [%s]", d.Critical, g.M, strings.Join(vals, ", "))
	}
	return s
}

func (j *Judge) factorOr() float64 {
	if j.factor > 0 {
		return j.factor
	}
	return DefaultFactor
}

func sameFloat(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
