package rules

import (
	"math"
	"testing"
)

func TestAlertDecisions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values map[string]float64
		shadow bool
		want   []string // metrics, in order
	}{
		{"no alerts", map[string]float64{MetricP95: 5000}, false, nil},
		{"one firing alert", map[string]float64{"alert:HighLatency": 1, MetricP95: 10}, false, []string{"alert:HighLatency"}},
		{"zero and NaN are not firing", map[string]float64{"alert:A": 0, "alert:B": math.NaN()}, false, nil},
		{"several, in metric order", map[string]float64{"alert:Z": 2, "alert:A": 1}, false, []string{"alert:A", "alert:Z"}},
		{"shadow mode records only", map[string]float64{"alert:A": 1}, true, []string{"alert:A"}},
	}
	for _, tt := range tests {
		ds := AlertDecisions(tt.values, tt.shadow)
		if len(ds) != len(tt.want) {
			t.Errorf("%s: %d decisions %+v; want %v", tt.name, len(ds), ds, tt.want)
			continue
		}
		for i, d := range ds {
			if d.Metric != tt.want[i] || d.Severity != SeverityCritical || !d.GateFailed || !d.AutoRollback ||
				d.Rollback == tt.shadow || d.WouldRollback != tt.shadow || d.Shadow != tt.shadow || d.Rule == "" {
				t.Errorf("%s: decision %d = %+v", tt.name, i, d)
			}
		}
	}
	// The reason names the alert (Explain passes the rule through).
	d := AlertDecisions(map[string]float64{"alert:HighLatency": 1}, false)[0]
	if got := (&Judge{}).Explain(d); got != d.Rule || got == "" {
		t.Errorf("Explain = %q; want the rule %q", got, d.Rule)
	}
}
