// Package rules is the monitor's judgement: which sampled values breach a
// gate, how severe a breach is, and when a failed gate asks for a rollback
// (the seed's shouldAutoRollback: an auto-rollback metric above 150 % of
// its threshold, by default). The limits themselves are the plan's
// (plan.Monitor.Limits), the one home the dashboard, the report and
// `runbook validate` read too. It is pure: no NATS, no clock, no I/O.
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

// AlertPrefix starts the metric names of alert samples (an alert firing is
// a sample; its absence is not missing data).
const AlertPrefix = "alert:"

// Judge holds the gates of one watch window and their N-of-M windows. It
// is fed one tick at a time (Observe) and says, per gated metric, whether
// the tick breached, whether the gate failed, and whether to roll back.
// Pure: the caller supplies the time since the window's start.
type Judge struct {
	gates map[string]plan.Limit
	state map[string]*gateState
}

type gateState struct {
	window  []float64 // last M judged values, oldest first (NaN: no sample)
	seen    bool      // a source has reported the metric (baseline or window)
	missing int       // missing ticks in a row
}

// NewJudge makes the judge of a plan's monitor section: its limits
// (plan.Monitor.Limits, so the dashboard, the report and `runbook
// validate` show what the monitor enforces).
func NewJudge(m plan.Monitor) *Judge {
	j := &Judge{gates: map[string]plan.Limit{}, state: map[string]*gateState{}}
	for _, l := range m.Limits() {
		j.gates[l.Metric] = l
		j.state[l.Metric] = &gateState{}
	}
	return j
}

// Gate returns the limits of metric.
func (j *Judge) Gate(metric string) (plan.Limit, bool) {
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
		if !g.Breaches(v) {
			continue
		}
		d := j.decision(g, st, v)
		d.Severity = SeverityWarning
		if g.IsCritical(v) {
			d.Severity = SeverityCritical
		}
		d.GateFailed = d.Critical >= g.N
		j.rollback(g, &d)
		out = append(out, d)
	}
	return out
}

func (j *Judge) decision(g plan.Limit, st *gateState, v float64) Decision {
	n := 0
	for _, x := range st.window {
		if !math.IsNaN(x) && g.Counts(x) {
			n++
		}
	}
	return Decision{Metric: g.Metric, Value: v, Threshold: g.Threshold, Below: g.Below, Critical: n, Size: g.M, Needed: g.N,
		Window: slices.Clone(st.window), Shadow: g.Shadow, AutoRollback: g.Rollback, Rule: g.Rule()}
}

func (j *Judge) rollback(g plan.Limit, d *Decision) {
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

// Explain is the sentence of a failed gate for rollback.requested and the
// report, e.g. "error_rate 4.5% exceeds 150% of its threshold 1% (limit
// 1.5%)" or "... for 3 of 5 samples (2400ms, 3500ms, …)".
func (j *Judge) Explain(d Decision) string {
	if d.NoData || IsAlert(d.Metric) {
		return d.Rule
	}
	g := j.gates[d.Metric]
	v, crit, th := plan.FormatMetric(d.Metric, d.Value), plan.FormatMetric(d.Metric, g.Critical), plan.FormatMetric(d.Metric, g.Threshold)
	var s string
	switch {
	case !g.HasCritical && g.Below:
		s = fmt.Sprintf("%s %s is below its threshold %s", d.Metric, v, th)
	case !g.HasCritical:
		s = fmt.Sprintf("%s %s exceeds its threshold %s", d.Metric, v, th)
	case g.Below:
		s = fmt.Sprintf("%s %s is below its critical bound %s (threshold %s)", d.Metric, v, crit, th)
	case g.Derived:
		s = fmt.Sprintf("%s %s exceeds %s%% of its threshold %s (limit %s)", d.Metric, v, strconv.FormatFloat(math.Round(g.Factor*1e4)/1e2, 'f', -1, 64), th, crit)
	default:
		s = fmt.Sprintf("%s %s exceeds its critical bound %s (threshold %s)", d.Metric, v, crit, th)
	}
	if g.M > 1 {
		vals := make([]string, len(d.Window))
		for i, x := range d.Window {
			if math.IsNaN(x) {
				vals[i] = "no data"
			} else {
				vals[i] = plan.FormatMetric(d.Metric, x)
			}
		}
		s += fmt.Sprintf(" for %d of the last %d samples [%s]", d.Critical, g.M, strings.Join(vals, ", "))
	}
	return s
}
