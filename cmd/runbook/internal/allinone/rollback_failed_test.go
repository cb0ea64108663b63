package allinone_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
)

const brokenRollbackPlan = `change_request: {id: CR-RF, title: "rollback that fails", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
rollback_plan:
  rollback_steps:
    - {name: restore database, command: {argv: [sh, -c, "echo restore: disk full >&2; exit 4"]}}
deploy:
  steps:
    - {name: migrate, command: {argv: ["false"]}}
`

// A failed rollback step ends the run ROLLBACK_FAILED, loudly: the event,
// a metric to alert on, and a report that names the step and why.
func TestRollbackFailedIsLoud(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := startPipeline(t, func(o *allinone.Options) { o.Registry = reg })
	run := p.submit(t, []byte(brokenRollbackPlan))
	rr := p.report(t, run, 30*time.Second)
	if rr.Status != "ROLLBACK_FAILED" {
		t.Fatalf("ended %s", rr.Status)
	}
	if !strings.Contains(rr.QcSummary, "Overall: CRITICAL") {
		t.Errorf("QC summary is not loud:\n%s", rr.QcSummary)
	}
	for _, want := range []string{"restore database", "exited 4", "disk full"} {
		if !strings.Contains(rr.ReportJson, want) {
			t.Errorf("report does not say %q:\n%s", want, rr.ReportJson)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "runbook_rollbacks_failed_total" && len(mf.GetMetric()) == 1 && mf.GetMetric()[0].GetCounter().GetValue() == 1 {
			found = true
		}
	}
	if !found {
		t.Error("runbook_rollbacks_failed_total did not count the failed rollback")
	}
}
