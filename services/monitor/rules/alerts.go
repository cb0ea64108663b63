package rules

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/kis-core/runbook/domain/plan"
)

// IsAlert reports whether metric is an alert sample's: alert:<alertname>,
// from the alertmanager source.
func IsAlert(metric string) bool { return strings.HasPrefix(metric, AlertPrefix) }

// AlertDecisions judges a tick's alert samples: an alert:<alertname> value
// above 0 (that many matching alerts fired during the tick) is a CRITICAL
// violation whose gate failed and that rolls back — or, in shadow mode,
// would have. Alerts have no gate, no N of M, no grace and no no-data
// policy: a firing alert is already Alertmanager's judgement, and its
// absence is no missing data. Decisions come in metric order.
func AlertDecisions(values map[string]float64, shadow bool) []Decision {
	var out []Decision
	for _, metric := range slices.Sorted(maps.Keys(values)) {
		v := values[metric]
		if !IsAlert(metric) || math.IsNaN(v) || !(v > 0) {
			continue
		}
		name := strings.TrimPrefix(metric, AlertPrefix)
		d := Decision{
			Metric: metric, Value: v, Threshold: 0, Severity: SeverityCritical,
			Critical: 1, Size: 1, Needed: 1, Window: []float64{v},
			GateFailed: true, Shadow: shadow, AutoRollback: true,
			Rule: fmt.Sprintf("alert %s is firing (%s matching alert(s) from Alertmanager during the window)", name, plan.FormatMetric(metric, v)),
		}
		if shadow {
			d.WouldRollback = true
		} else {
			d.Rollback = true
		}
		out = append(out, d)
	}
	return out
}
