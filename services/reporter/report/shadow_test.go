package report

import (
	"math"
	"strings"
	"testing"
	"time"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// A shadow-mode gate's violations are in the report as such, and the run
// still succeeds; a no-data violation says so instead of printing NaN.
func TestShadowAndNoDataViolations(t *testing.T) {
	t.Parallel()
	h := deployed()
	h.at(2*time.Minute, "threshold.violated", &runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{
		Metric: MetricErrorRate, Value: 0.5, Threshold: 0.01, Severity: "CRITICAL", Source: "http_probe", AutoRollback: true,
		Shadow: true, GateFailed: true, WindowCritical: 3, WindowSize: 5, WindowNeeded: 3}})
	h.at(3*time.Minute, "threshold.violated", &runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{
		Metric: MetricP95, Value: math.NaN(), Threshold: 2100, Severity: "CRITICAL", Source: "no data", NoData: true, Shadow: true}})
	for _, ev := range successRun().events[len(deployed().events):] {
		h.events = append(h.events, ev)
	}
	res := generate(t, h)
	if res.Status != "SUCCESS" {
		t.Errorf("status %s; a shadow gate must not fail the run", res.Status)
	}
	var shadow, noData bool
	for _, is := range res.Report.Issues {
		if strings.Contains(is.Message, "shadow mode: recorded, not enforced") && strings.Contains(is.Message, "3 of the last 5 samples") {
			shadow = true
		}
		if strings.Contains(is.Message, "api_response_time_p95: no data") && !strings.Contains(is.Message, "NaN") {
			noData = true
		}
	}
	if !shadow || !noData {
		t.Errorf("issues %+v; want the shadow violation and the no-data one described", res.Report.Issues)
	}
}
