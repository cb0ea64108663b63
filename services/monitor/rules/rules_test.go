package rules

import (
	"math"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	r := Default()
	tests := []struct {
		name     string
		metric   string
		value    float64
		breach   bool
		severity string
		rollback bool
	}{
		{"p95 under threshold", MetricP95, 1500, false, "", false},
		{"p95 at threshold is no breach (seed: value > threshold)", MetricP95, 2100, false, "", false},
		{"p95 just above threshold", MetricP95, 2101, true, SeverityWarning, false},
		{"p95 at 150 % is not yet critical", MetricP95, 3150, true, SeverityWarning, false},
		{"p95 above 150 %", MetricP95, 3151, true, SeverityCritical, true},
		{"error rate 1 % is fine", MetricErrorRate, 0.01, false, "", false},
		{"error rate 1.2 %", MetricErrorRate, 0.012, true, SeverityWarning, false},
		{"error rate 100 %", MetricErrorRate, 1, true, SeverityCritical, true},
		{"cpu above threshold is a warning only", MetricCPU, 95, true, SeverityWarning, false},
		{"cpu far above threshold is still no auto-rollback metric", MetricCPU, 1000, true, SeverityWarning, false},
		{"memory", MetricMemory, 86, true, SeverityWarning, false},
		{"connections", MetricConnections, 1001, true, SeverityWarning, false},
		{"metric without threshold is never judged", "requests", 1e9, false, "", false},
		{"NaN is never a breach", MetricP95, math.NaN(), false, "", false},
	}
	for _, tt := range tests {
		v, ok := r.Check(tt.metric, tt.value)
		if ok != tt.breach || v.Severity != tt.severity || v.Rollback != tt.rollback {
			t.Errorf("%s: Check(%s, %v) = %+v, %v; want breach %v severity %q rollback %v", tt.name, tt.metric, tt.value, v, ok, tt.breach, tt.severity, tt.rollback)
		}
		if ok && v.AutoRollback != (tt.metric == MetricP95 || tt.metric == MetricErrorRate) {
			t.Errorf("%s: AutoRollback = %v", tt.name, v.AutoRollback)
		}
	}
}

func TestShouldAutoRollback(t *testing.T) {
	t.Parallel()
	r := Default()
	tests := []struct {
		name   string
		vs     []Violation
		want   string
		should bool
	}{
		{"none", nil, "", false},
		{"warning only", []Violation{{Metric: MetricP95, Value: 2500, Threshold: 2100}}, "", false},
		{"cpu far above is not a rollback metric", []Violation{{Metric: MetricCPU, Value: 500, Threshold: 80}}, "", false},
		{"p95 beyond 150 %", []Violation{{Metric: MetricCPU, Value: 500, Threshold: 80}, {Metric: MetricP95, Value: 4000, Threshold: 2100}}, MetricP95, true},
		{"first qualifying wins", []Violation{{Metric: MetricErrorRate, Value: 0.5, Threshold: 0.01}, {Metric: MetricP95, Value: 4000, Threshold: 2100}}, MetricErrorRate, true},
	}
	for _, tt := range tests {
		v, ok := r.ShouldAutoRollback(tt.vs)
		if ok != tt.should || v.Metric != tt.want {
			t.Errorf("%s: ShouldAutoRollback = %+v, %v; want %q, %v", tt.name, v, ok, tt.want, tt.should)
		}
	}
}

func TestEvaluateIsSortedByMetric(t *testing.T) {
	t.Parallel()
	vs := Default().Evaluate(map[string]float64{MetricP95: 5000, MetricErrorRate: 0.012, MetricCPU: 10, "requests": 10})
	if len(vs) != 2 || vs[0].Metric != MetricP95 || vs[1].Metric != MetricErrorRate {
		t.Fatalf("Evaluate = %+v; want p95 then error_rate", vs)
	}
	if !vs[0].Rollback || vs[1].Rollback {
		t.Errorf("Evaluate rollback flags = %v, %v; want true (5000 > 3150), false (0.012 ≤ 0.015)", vs[0].Rollback, vs[1].Rollback)
	}
}

func TestFromPlan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		m         plan.Monitor
		metric    string
		threshold float64
		auto      []string
		factor    float64
	}{
		{"empty plan gets the seed's rules", plan.Monitor{}, MetricP95, 2100, []string{MetricP95, MetricErrorRate}, 1.5},
		{"plan threshold overrides one metric", plan.Monitor{Thresholds: map[string]float64{MetricErrorRate: 0.05}}, MetricErrorRate, 0.05, []string{MetricP95, MetricErrorRate}, 1.5},
		{"other metrics keep the seed's", plan.Monitor{Thresholds: map[string]float64{MetricErrorRate: 0.05}}, MetricCPU, 80, []string{MetricP95, MetricErrorRate}, 1.5},
		{"auto rollback metrics and factor", plan.Monitor{AutoRollback: &plan.AutoRollback{Metrics: []string{MetricErrorRate}, Factor: 2}}, MetricP95, 2100, []string{MetricErrorRate}, 2},
		{"auto rollback without fields keeps the defaults", plan.Monitor{AutoRollback: &plan.AutoRollback{}}, MetricP95, 2100, []string{MetricP95, MetricErrorRate}, 1.5},
		{"explicit empty list turns auto-rollback off", plan.Monitor{AutoRollback: &plan.AutoRollback{Metrics: []string{}}}, MetricP95, 2100, []string{}, 1.5},
	}
	for _, tt := range tests {
		r := FromPlan(tt.m)
		if r.Thresholds[tt.metric] != tt.threshold || r.Factor != tt.factor || len(r.AutoRollback) != len(tt.auto) {
			t.Errorf("%s: FromPlan = %+v", tt.name, r)
			continue
		}
		for i := range tt.auto {
			if r.AutoRollback[i] != tt.auto[i] {
				t.Errorf("%s: AutoRollback = %v; want %v", tt.name, r.AutoRollback, tt.auto)
			}
		}
	}
	// FromPlan must not alias the plan's map.
	m := plan.Monitor{Thresholds: map[string]float64{MetricP95: 1}}
	r := FromPlan(m)
	r.Thresholds[MetricP95] = 99
	if m.Thresholds[MetricP95] != 1 {
		t.Errorf("FromPlan aliases the plan's thresholds")
	}
}

func TestAutoRollbackOff(t *testing.T) {
	t.Parallel()
	r := FromPlan(plan.Monitor{AutoRollback: &plan.AutoRollback{Metrics: []string{}}})
	v, ok := r.Check(MetricErrorRate, 1)
	if !ok || v.Severity != SeverityWarning || v.Rollback {
		t.Errorf("Check with auto-rollback off = %+v, %v; want a WARNING breach without rollback", v, ok)
	}
	if _, ok := r.ShouldAutoRollback([]Violation{v}); ok {
		t.Errorf("ShouldAutoRollback with auto-rollback off = true")
	}
}

func TestReasonAndFormat(t *testing.T) {
	t.Parallel()
	r := Default()
	tests := []struct {
		v    Violation
		want string
	}{
		{Violation{Metric: MetricErrorRate, Value: 0.045, Threshold: 0.01}, "error_rate 4.5% exceeds 150% of its threshold 1% (limit 1.5%)"},
		{Violation{Metric: MetricP95, Value: 3200.44, Threshold: 2100}, "api_response_time_p95 3200.4ms exceeds 150% of its threshold 2100ms (limit 3150ms)"},
	}
	for _, tt := range tests {
		if got := r.Reason(tt.v); got != tt.want {
			t.Errorf("Reason = %q; want %q", got, tt.want)
		}
	}
	if got := Format(MetricCPU, 81.5); got != "81.5%" { // cpu_utilization is a percentage
		t.Errorf("Format(cpu) = %q", got)
	}
}
