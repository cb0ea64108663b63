package api_test

import (
	"strings"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/api"
)

// The dashboard's run page: a described (manual) step is MANUAL with
// "manual — not executed" instead of a duration, never SUCCEEDED in 0 ms;
// run.failed (nothing undone) is an ACT event with its reason; every
// metric value is in its one unit.
func TestViewManualStepsFailedRunAndUnits(t *testing.T) {
	t.Parallel()
	reason := plan.NothingUndoneReason("tests failed", []string{"트래픽 차단"})
	manual := &runbookv1.StepEvent{Index: 0, Name: "트래픽 차단", Kind: "manual", Attempt: 1, List: "rollback", Manual: true}
	payloads := []any{
		&runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{Metric: "error_rate", Value: 0.3, Threshold: 0.01, Severity: "CRITICAL"}},
		&runbookv1.Event_TestLoadFailed{TestLoadFailed: &runbookv1.LoadResult{Vus: 5, Requests: 100, Errors: 30, ErrorRate: 0.3, GateErrorRate: 0.01, P95Ms: 12.34, GateP95Ms: 2100}},
		&runbookv1.Event_RollbackStepStarted{RollbackStepStarted: manual},
		&runbookv1.Event_RollbackStepSucceeded{RollbackStepSucceeded: manual},
		&runbookv1.Event_RunFailed{RunFailed: &runbookv1.RunEnded{Reason: reason}},
	}
	run := &reporter.Run{RunSummary: reporter.RunSummary{RunID: "R", Status: runstate.Failed}}
	for i, p := range payloads {
		run.Events = append(run.Events, eventbus.Envelope{Event: eventbus.New("R", p, i), Seq: uint64(i + 1)})
	}
	v := api.BuildView(run)
	if len(v.Steps) != 1 || v.Steps[0].Status != "MANUAL" || !v.Steps[0].Manual || v.Steps[0].Note != plan.ManualNotExecuted {
		t.Errorf("manual step row %+v", v.Steps)
	}
	byType := map[string]api.TimelineRow{}
	for _, r := range v.Timeline {
		byType[r.Type] = r
	}
	if r := byType["rollback.step.succeeded"]; !strings.Contains(r.Text, "manual — not executed") || strings.Contains(r.Text, "succeeded") {
		t.Errorf("manual step timeline row %+v", r)
	}
	if r := byType["run.failed"]; r.Phase != "ACT" || r.Text != reason {
		t.Errorf("run.failed row %+v", r)
	}
	if r := byType["threshold.violated"]; r.Text != "CRITICAL error_rate = 30% > 1%" {
		t.Errorf("violation row %+v", r)
	}
	if len(v.Violations) != 1 || v.Violations[0].ValueText != "30%" || v.Violations[0].ThresholdText != "1%" {
		t.Errorf("violations %+v", v.Violations)
	}
	if v.Load == nil || v.Load.Text != "5 VUs, 100 requests, 30 errors (error rate 30%, gate 1%), p95 12.3ms (gate 2100ms)" {
		t.Errorf("load %+v", v.Load)
	}
	m := api.BuildMetrics(run, nil)
	if u := m.Units["error_rate"]; u.Scale != 100 || u.Suffix != "%" {
		t.Errorf("units %+v", m.Units)
	}
}
