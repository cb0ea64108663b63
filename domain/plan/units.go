package plan

import (
	"math"
	"strconv"
)

// Unit is how a metric's value is shown: the value times Scale, rounded
// to Decimals (-1: as is; 4 for a metric of no known unit), then Suffix. Internally every metric keeps the
// unit its sources report (error_rate a fraction, 0.01 = 1 %); every
// printout — CLI, dashboard, report, QC summary, monitor reasons — shows
// it in this one unit, through FormatMetric (the dashboard applies the
// same Scale and Suffix, served by the read API).
type Unit struct {
	// Name is what the value is in: ms, fraction (the error rate), %,
	// bytes, "" (a count or the plan's own unit).
	Name     string  `json:"name"`
	Scale    float64 `json:"scale"`
	Suffix   string  `json:"suffix"`
	Decimals int     `json:"decimals"`
}

// MetricUnit is the unit metric is shown in.
func MetricUnit(metric string) Unit {
	switch metric {
	case MetricP95:
		return Unit{Name: UnitMS, Scale: 1, Suffix: "ms", Decimals: 1}
	case MetricErrorRate:
		return Unit{Name: UnitFraction, Scale: 100, Suffix: "%", Decimals: 4}
	case MetricCPU, MetricMemory, MetricDisk:
		return Unit{Name: UnitPercent, Scale: 1, Suffix: "%", Decimals: 2}
	case MetricProcessRSS:
		return Unit{Name: UnitBytes, Scale: 1, Suffix: " bytes", Decimals: 0}
	}
	return Unit{Scale: 1, Decimals: 4}
}

// FormatMetric writes a value of metric in its unit (MetricUnit), without
// trailing zeros: error_rate 0.3 → "30%", 0.003 → "0.3%";
// api_response_time_p95 2350.04 → "2350ms"; cpu_utilization 81 → "81%";
// an unknown metric as the number it is. NaN and infinities print as Go
// writes them.
func FormatMetric(metric string, v float64) string {
	u := MetricUnit(metric)
	x := v * u.Scale
	if u.Decimals >= 0 && !math.IsNaN(x) && !math.IsInf(x, 0) {
		p := math.Pow10(u.Decimals)
		x = math.Round(x*p) / p
		if x == 0 {
			x = 0 // no "-0"
		}
	}
	return strconv.FormatFloat(x, 'f', -1, 64) + u.Suffix
}
