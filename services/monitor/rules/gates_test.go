package rules

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

func f(v float64) *float64 { return &v }

// step is one tick fed to a judge and what must come out for the metric.
type step struct {
	elapsed  time.Duration
	value    float64 // NaN: no sample
	severity string  // "" : no decision
	failed   bool
	rollback bool
	would    bool
	noData   bool
}

func TestJudgeSequences(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	p95 := MetricP95
	tests := []struct {
		name  string
		m     plan.Monitor
		steps []step
	}{
		{"seed default: immediate rollback above 150%", plan.Monitor{}, []step{
			{0, 1000, "", false, false, false, false},
			{0, 2500, SeverityWarning, false, false, false, false},
			{0, 3200, SeverityCritical, true, true, false, false},
		}},
		{"for 3 of 5: one spike does not fail", plan.Monitor{Gates: map[string]plan.Gate{p95: {Max: f(2100), For: "3 of 5"}}}, []step{
			{0, 1000, "", false, false, false, false},
			{0, 5000, SeverityCritical, false, false, false, false},
			{0, 1000, "", false, false, false, false},
			{0, 1000, "", false, false, false, false},
			{0, 1000, "", false, false, false, false},
			{0, 1000, "", false, false, false, false},
			{0, 5000, SeverityCritical, false, false, false, false}, // the first spike has left the window
		}},
		{"for 3 of 5: three spikes fail", plan.Monitor{Gates: map[string]plan.Gate{p95: {Max: f(2100), For: "3 of 5"}}}, []step{
			{0, 5000, SeverityCritical, false, false, false, false},
			{0, 1000, "", false, false, false, false},
			{0, 5000, SeverityCritical, false, false, false, false},
			{0, 2500, SeverityWarning, false, false, false, false}, // warning band: does not count
			{0, 5000, SeverityCritical, true, true, false, false},
		}},
		{"grace: breaches in the grace period are not judged", plan.Monitor{Gates: map[string]plan.Gate{p95: {Grace: plan.Duration{Duration: time.Minute}}}}, []step{
			{10 * time.Second, 9000, "", false, false, false, false},
			{time.Minute, 9000, SeverityCritical, true, true, false, false},
		}},
		{"no data fails closed after K (explicit gate)", plan.Monitor{Gates: map[string]plan.Gate{p95: {NoDataAfter: 2}}}, []step{
			{0, nan, "", false, false, false, false},
			{0, nan, SeverityCritical, true, true, false, true},
		}},
		{"no data: a threshold-only metric is expected once seen", plan.Monitor{}, []step{
			{0, nan, "", false, false, false, false},
			{0, nan, "", false, false, false, false},
			{0, nan, "", false, false, false, false},
			{0, 1000, "", false, false, false, false},
			{0, nan, "", false, false, false, false},
			{0, nan, "", false, false, false, false},
			{0, nan, SeverityCritical, true, true, false, true},
		}},
		{"no data: a sample resets the count", plan.Monitor{Gates: map[string]plan.Gate{p95: {NoDataAfter: 2}}}, []step{
			{0, nan, "", false, false, false, false},
			{0, 1000, "", false, false, false, false},
			{0, nan, "", false, false, false, false},
			{0, nan, SeverityCritical, true, true, false, true},
		}},
		{"no data: warn never rolls back", plan.Monitor{Gates: map[string]plan.Gate{p95: {NoData: plan.NoDataWarn, NoDataAfter: 1}}}, []step{
			{0, nan, SeverityWarning, false, false, false, true},
		}},
		{"no data: ignore", plan.Monitor{Gates: map[string]plan.Gate{p95: {NoData: plan.NoDataIgnore, NoDataAfter: 1}}}, []step{
			{0, nan, "", false, false, false, false},
			{0, nan, "", false, false, false, false},
		}},
		{"shadow: fails, would roll back, does not", plan.Monitor{Gates: map[string]plan.Gate{p95: {Mode: plan.ModeShadow}}}, []step{
			{0, 9000, SeverityCritical, true, false, true, false},
		}},
		{"monitor-wide shadow", plan.Monitor{Mode: plan.ModeShadow}, []step{
			{0, 9000, SeverityCritical, true, false, true, false},
		}},
		{"explicit critical bound", plan.Monitor{Gates: map[string]plan.Gate{p95: {Max: f(1000), Critical: f(1200)}}}, []step{
			{0, 1100, SeverityWarning, false, false, false, false},
			{0, 1300, SeverityCritical, true, true, false, false},
		}},
		{"auto-rollback off: critical never rolls back", plan.Monitor{AutoRollback: &plan.AutoRollback{Metrics: []string{}}, Gates: map[string]plan.Gate{p95: {Max: f(1000), Critical: f(1200)}}}, []step{
			{0, 1300, SeverityCritical, true, false, false, false},
		}},
		{"rollback: true on a metric not in auto_rollback", plan.Monitor{AutoRollback: &plan.AutoRollback{Metrics: []string{}}, Gates: map[string]plan.Gate{p95: {Max: f(1000), Rollback: new(true)}}}, []step{
			{0, 1400, SeverityWarning, false, false, false, false},
			{0, 1600, SeverityCritical, true, true, false, false},
		}},
		{"min gate", plan.Monitor{Gates: map[string]plan.Gate{p95: {Min: f(100), Rollback: new(true)}}}, []step{
			{0, 150, "", false, false, false, false},
			{0, 80, SeverityWarning, false, false, false, false},
			{0, 50, SeverityCritical, true, true, false, false},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := NewJudge(tt.m)
			for i, s := range tt.steps {
				values := map[string]float64{}
				if !math.IsNaN(s.value) {
					values[p95] = s.value
				}
				var d *Decision
				for _, x := range j.Observe(s.elapsed, values) {
					if x.Metric == p95 {
						d = &x
					}
				}
				if s.severity == "" {
					if d != nil {
						t.Fatalf("step %d (%v): decision %+v; want none", i, s.value, *d)
					}
					continue
				}
				if d == nil {
					t.Fatalf("step %d (%v): no decision; want %s", i, s.value, s.severity)
				}
				if d.Severity != s.severity || d.GateFailed != s.failed || d.Rollback != s.rollback || d.WouldRollback != s.would || d.NoData != s.noData {
					t.Fatalf("step %d (%v): %+v; want severity %s failed %v rollback %v would %v noData %v", i, s.value, *d, s.severity, s.failed, s.rollback, s.would, s.noData)
				}
			}
		})
	}
}

func TestJudgeExplain(t *testing.T) {
	t.Parallel()
	j := NewJudge(plan.Monitor{Gates: map[string]plan.Gate{MetricP95: {For: "2 of 3"}}})
	var last Decision
	for _, v := range []float64{4000, 1000, 5000} {
		for _, d := range j.Observe(0, map[string]float64{MetricP95: v, MetricErrorRate: 0}) {
			last = d
		}
	}
	if !last.Rollback || last.Critical != 2 || len(last.Window) != 3 {
		t.Fatalf("decision %+v; want a rollback with 2 of 3", last)
	}
	want := "api_response_time_p95 5000ms exceeds 150% of its threshold 2100ms (limit 3150ms) for 2 of the last 3 samples [4000ms, 1000ms, 5000ms]"
	if got := j.Explain(last); got != want {
		t.Errorf("Explain = %q\nwant      %q", got, want)
	}
	if last.Rule != "api_response_time_p95 > 3150 for 2 of 3 samples" {
		t.Errorf("Rule = %q", last.Rule)
	}
	// The seed's reason, unchanged, for a 1-of-1 gate.
	d := NewJudge(plan.Monitor{}).Observe(0, map[string]float64{MetricErrorRate: 0.045})
	if len(d) != 1 || NewJudge(plan.Monitor{}).Explain(d[0]) != "error_rate 4.5% exceeds 150% of its threshold 1% (limit 1.5%)" {
		t.Errorf("seed reason: %+v", d)
	}
	nd := NewJudge(plan.Monitor{Gates: map[string]plan.Gate{MetricErrorRate: {NoDataAfter: 1}}}).Observe(0, nil)
	if len(nd) != 1 || !strings.Contains(nd[0].Rule, "no data for 1 samples") || !math.IsNaN(nd[0].Value) {
		t.Errorf("no-data decision: %+v", nd)
	}
}

func TestAlertMetricsAreNeverMissing(t *testing.T) {
	t.Parallel()
	j := NewJudge(plan.Monitor{Thresholds: map[string]float64{"alert:HighLatency": 0}})
	j.Seen("alert:HighLatency")
	for range 5 {
		if d := j.Observe(0, nil); len(d) != 0 {
			t.Fatalf("an alert that stopped firing is no missing data: %+v", d)
		}
	}
}
