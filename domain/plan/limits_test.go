package plan

import (
	"math"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan/limittest"
)

// TestLimits is the table of effective limits over limittest's plans (the
// plans the agreement test in cmd/runbook/internal/allinone judges with the
// monitor, the API and the QC summary).
func TestLimits(t *testing.T) {
	t.Parallel()
	p95, er, cpu := MetricP95, MetricErrorRate, MetricCPU
	seed := func(metric string, threshold float64, unit string) Limit {
		return Limit{Metric: metric, Unit: unit, Threshold: threshold, Factor: 1.5, N: 1, M: 1, NoData: NoDataFail, NoDataAfter: 3}
	}
	rollsBack := func(l Limit, critical float64) Limit {
		l.Rollback, l.Critical, l.HasCritical, l.Derived = true, critical, true, true
		return l
	}
	want := map[string]map[string]Limit{
		// The seed's thresholds: p95 and error rate roll back above 150 %,
		// cpu only warns.
		"seed thresholds": {
			p95: rollsBack(seed(p95, 2100, UnitMS), 3150),
			er:  rollsBack(seed(er, 0.01, UnitFraction), 0.015),
			cpu: seed(cpu, 80, UnitPercent),
		},
		// An explicit critical is the rollback limit, whatever the factor
		// (2500, not 2000 × 1.5 = 3000 nor 2100 × 1.5 = 3150).
		"gates with critical": {
			p95: {Metric: p95, Unit: UnitMS, Threshold: 2000, Critical: 2500, HasCritical: true, Factor: 1.5, N: 1, M: 1, NoData: NoDataFail, NoDataAfter: 3, Rollback: true, Explicit: true},
			er:  {Metric: er, Unit: UnitFraction, Threshold: 0.02, Critical: 0.05, HasCritical: true, Factor: 1.5, N: 1, M: 1, NoData: NoDataFail, NoDataAfter: 3, Rollback: true, Explicit: true},
		},
		"factor 2": {
			p95: func() Limit { l := rollsBack(seed(p95, 1000, UnitMS), 2000); l.Factor = 2; return l }(),
			er:  func() Limit { l := rollsBack(seed(er, 0.02, UnitFraction), 0.04); l.Factor = 2; return l }(),
		},
		// A min gate: a value below breaches; the derived critical bound is
		// threshold ÷ factor, as the monitor enforces it.
		"min gate": {
			"throughput": {Metric: "throughput", Threshold: 10, Below: true, Critical: 10 / 1.5, HasCritical: true, Derived: true, Factor: 1.5, N: 1, M: 1, NoData: NoDataFail, NoDataAfter: 3, Rollback: true, Explicit: true},
			p95:          {Metric: p95, Unit: UnitMS, Threshold: 1, Below: true, Critical: 0.5, HasCritical: true, Factor: 1.5, N: 1, M: 1, NoData: NoDataFail, NoDataAfter: 3, Rollback: true, Explicit: true},
		},
		// Shadow: the same limits, recorded, never rolled back.
		"shadow": {
			p95: func() Limit { l := rollsBack(seed(p95, 2100, UnitMS), 3150); l.Shadow = true; return l }(),
			er:  func() Limit { l := rollsBack(seed(er, 0.01, UnitFraction), 0.015); l.Shadow = true; return l }(),
		},
		// Off: no critical bound; every breach is a WARNING.
		"auto-rollback off": {
			p95: seed(p95, 1500, UnitMS),
			er:  seed(er, 0.01, UnitFraction),
		},
	}
	for _, c := range limittest.Cases {
		t.Run(c.Name, func(t *testing.T) {
			p, issues := Parse("limits.yaml", []byte(c.YAML()))
			if p == nil {
				t.Fatalf("plan refused: %v", issues)
			}
			got := map[string]Limit{}
			prev := ""
			for _, l := range p.Monitor.Limits() {
				if l.Metric <= prev {
					t.Errorf("limits not sorted by metric: %q after %q", l.Metric, prev)
				}
				prev = l.Metric
				got[l.Metric] = l
			}
			if len(want[c.Name]) == 0 {
				t.Fatalf("no expectations for case %q", c.Name)
			}
			for _, metric := range c.Metrics {
				if _, ok := want[c.Name][metric]; !ok {
					t.Errorf("case %q judges %s: say what its limit is", c.Name, metric)
				}
			}
			for metric, w := range want[c.Name] {
				g := got[metric]
				if !closeTo(g.Critical, w.Critical) {
					t.Errorf("%s critical = %v; want %v", metric, g.Critical, w.Critical)
				}
				g.Critical, w.Critical = 0, 0
				if g != w {
					t.Errorf("%s = %+v\nwant %+v", metric, g, w)
				}
				if l, ok := p.Monitor.LimitOf(metric); !ok || l.Metric != metric {
					t.Errorf("LimitOf(%s) = %+v, %v", metric, l, ok)
				}
			}
			// The seed's five are always gated.
			for _, metric := range KnownMetrics() {
				if _, ok := got[metric]; !ok {
					t.Errorf("no limit for the seed's %s", metric)
				}
			}
			if _, ok := p.Monitor.LimitOf("requests"); ok {
				t.Error("a metric without a threshold or gate has a limit")
			}
		})
	}
}

func closeTo(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }

// TestLimitJudgesValues: where a value stands against a limit, the
// comparisons the monitor's judge, the report and the QC summary all call.
func TestLimitJudgesValues(t *testing.T) {
	t.Parallel()
	seedP95 := lim(t, Monitor{}, MetricP95)
	seedErr := lim(t, Monitor{}, MetricErrorRate)
	seedCPU := lim(t, Monitor{}, MetricCPU)
	minGate := lim(t, Monitor{Gates: map[string]Gate{"throughput": {Min: new(10.0), Rollback: new(true)}}}, "throughput")
	off := lim(t, Monitor{AutoRollback: &AutoRollback{Metrics: []string{}}}, MetricErrorRate)
	tests := []struct {
		name                      string
		l                         Limit
		v                         float64
		breaches, critical, count bool
	}{
		{"p95 under threshold", seedP95, 1500, false, false, false},
		{"p95 at threshold is no breach (seed: value > threshold)", seedP95, 2100, false, false, false},
		{"p95 just above threshold", seedP95, 2101, true, false, false},
		{"p95 at 150 % is not yet critical", seedP95, 3150, true, false, false},
		{"p95 above 150 %", seedP95, 3151, true, true, true},
		{"error rate 1 % is fine", seedErr, 0.01, false, false, false},
		{"error rate 1.2 %", seedErr, 0.012, true, false, false},
		{"error rate 100 %", seedErr, 1, true, true, true},
		{"cpu above threshold is a breach with no critical bound", seedCPU, 1000, true, false, true},
		{"NaN is never a breach", seedP95, math.NaN(), false, false, false},
		{"min gate: above is fine", minGate, 11, false, false, false},
		{"min gate: below the minimum", minGate, 9, true, false, false},
		{"min gate: below minimum ÷ factor", minGate, 6, true, true, true},
		{"auto-rollback off: any breach counts, none is critical", off, 1, true, false, true},
	}
	for _, tt := range tests {
		if b, c, n := tt.l.Breaches(tt.v), tt.l.IsCritical(tt.v), tt.l.Counts(tt.v); b != tt.breaches || c != tt.critical || n != tt.count {
			t.Errorf("%s: breaches %v critical %v counts %v; want %v %v %v", tt.name, b, c, n, tt.breaches, tt.critical, tt.count)
		}
	}
	if seedCPU.Rollback || !seedP95.Rollback || off.Rollback {
		t.Error("only the auto_rollback metrics roll back")
	}
}

func TestLimitWords(t *testing.T) {
	t.Parallel()
	m := Monitor{AutoRollback: &AutoRollback{Factor: 2}, Gates: map[string]Gate{
		MetricP95:    {For: "3 of 5"},
		"throughput": {Min: new(10.0), Rollback: new(true)},
		MetricCPU:    {Critical: new(95.0)},
	}}
	shadow := Monitor{Mode: ModeShadow}
	tests := []struct {
		l          Limit
		rule, cite string
	}{
		{lim(t, Monitor{}, MetricP95), "api_response_time_p95 > 3150", "threshold 2100ms, rollback above 3150ms"},
		{lim(t, Monitor{}, MetricErrorRate), "error_rate > 0.015", "threshold 1%, rollback above 1.5%"},
		{lim(t, m, MetricP95), "api_response_time_p95 > 4200 for 3 of 5 samples", "threshold 2100ms, rollback above 4200ms for 3 of 5 samples"},
		{lim(t, m, "throughput"), "throughput < 5", "minimum 10, rollback below 5"},
		{lim(t, Monitor{Gates: map[string]Gate{"throughput": {Min: new(10.0), Rollback: new(true)}}}, "throughput"), "throughput < 6.666666666666667", "minimum 10, rollback below 6.6667"},
		{lim(t, m, MetricCPU), "cpu_utilization > 95", "threshold 80%, critical above 95%, no rollback"},
		{lim(t, Monitor{}, MetricMemory), "memory_usage > 85", "threshold 85%, no rollback"},
		{lim(t, shadow, MetricErrorRate), "error_rate > 0.015", "threshold 1%, would roll back above 1.5% (shadow)"},
	}
	for _, tt := range tests {
		if got := tt.l.Rule(); got != tt.rule {
			t.Errorf("Rule = %q; want %q", got, tt.rule)
		}
		if got := tt.l.Cite(); got != tt.cite {
			t.Errorf("Cite = %q; want %q", got, tt.cite)
		}
	}
	for _, f := range []struct {
		metric string
		v      float64
		want   string
	}{
		{MetricP95, 3200.44, "3200.4ms"}, {MetricErrorRate, 0.045, "4.5%"}, {MetricErrorRate, 0.01 * 1.5, "1.5%"},
		{MetricCPU, 81.5, "81.5%"}, {MetricProcessRSS, 1048576, "1048576 bytes"}, {MetricActiveConnections, 12, "12"},
	} {
		if got := FormatMetric(f.metric, f.v); got != f.want {
			t.Errorf("FormatMetric(%s, %v) = %q; want %q", f.metric, f.v, got, f.want)
		}
	}
}

func lim(t *testing.T, m Monitor, metric string) Limit {
	t.Helper()
	l, ok := m.LimitOf(metric)
	if !ok {
		t.Fatalf("no limit for %s", metric)
	}
	return l
}

// TestLimitsDefaults: the plan is never changed, auto_rollback without
// fields keeps the seed's rule, an explicit empty list turns it off.
func TestLimitsDefaults(t *testing.T) {
	t.Parallel()
	m := Monitor{Thresholds: map[string]float64{MetricP95: 1}}
	ls := m.Limits()
	ls[0].Threshold = 99
	if m.Thresholds[MetricP95] != 1 || len(m.Thresholds) != 1 {
		t.Error("Limits changed the plan")
	}
	if l := lim(t, Monitor{AutoRollback: &AutoRollback{}}, MetricErrorRate); !l.Rollback || l.Factor != 1.5 || !closeTo(l.Critical, 0.015) {
		t.Errorf("auto_rollback: {} = %+v; want the seed's rule", l)
	}
	for _, l := range (Monitor{AutoRollback: &AutoRollback{Metrics: []string{}}}).Limits() {
		if l.Rollback || l.HasCritical {
			t.Errorf("auto_rollback.metrics: [] still rolls back: %+v", l)
		}
	}
	// A gate's grace and no-data policy are the plan's.
	l := lim(t, Monitor{Gates: map[string]Gate{MetricP95: {Grace: Duration{Duration: time.Minute}, NoData: NoDataIgnore, NoDataAfter: 5}}}, MetricP95)
	if l.Grace != time.Minute || l.NoData != NoDataIgnore || l.NoDataAfter != 5 || l.Threshold != 2100 || !l.Explicit {
		t.Errorf("gate without a bound = %+v", l)
	}
}
