package allinone_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/services/reporter/report"
)

const nothingUndonePlan = `change_request: {id: CR-NU, title: "a failure nothing undoes", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
scope: {systems_affected: [Orders API]}
rollback_plan:
  rollback_steps:
    - "트래픽 차단"
    - "call the on-call DBA"
deploy:
  steps:
    - {name: migrate, command: {argv: ["false"]}}
`

// A deploy step fails and the plan has no executable rollback step: the
// run ends FAILED with "nothing was undone" (never ROLLED_BACK after a
// rollback of 0 steps), no rollback starts, the report is still produced
// and says so, with the described steps as the operator's to-do.
func TestFailureWithNothingToUndoEndsFailed(t *testing.T) {
	p := startPipeline(t, nil)
	run := p.submit(t, []byte(nothingUndonePlan))
	rr := p.report(t, run, 30*time.Second)
	if rr.Status != string(runstate.Failed) {
		t.Fatalf("ended %s, want FAILED:\n%s", rr.Status, rr.QcSummary)
	}
	evs := p.history(t, run)
	for _, typ := range []string{"rollback.started", "rollback.step.started", "rollback.done"} {
		if n := countType(evs, typ); n != 0 {
			t.Errorf("%d %s: a rollback ran for a plan with nothing to undo (%v)", n, typ, types(evs))
		}
	}
	if countType(evs, "run.failed") != 1 || countType(evs, "report.ready") != 1 {
		t.Fatalf("events %v", types(evs))
	}
	st := runstate.Fold(run, evs)
	if st.Status != runstate.Failed || !strings.HasPrefix(st.FinalReason, plan.NothingUndone) ||
		!strings.Contains(st.FinalReason, "deploy failed at migrate") || !strings.Contains(st.FinalReason, "1. 트래픽 차단 2. call the on-call DBA") {
		t.Errorf("status %s, reason %q", st.Status, st.FinalReason)
	}
	if !strings.HasPrefix(rr.QcSummary, "Orders API Deployment Report - ") ||
		!strings.Contains(rr.QcSummary, "\nOverall: FAIL - "+plan.NothingUndone) ||
		!strings.Contains(rr.QcSummary, "\nDatabase: not checked\nCache: not checked\n") {
		t.Errorf("QC summary:\n%s", rr.QcSummary)
	}
	var r report.Report
	if err := json.Unmarshal([]byte(rr.ReportJson), &r); err != nil {
		t.Fatal(err)
	}
	if r.Rollback.Executed || !r.Rollback.NothingUndone || r.Rollback.RequestedBy == nil || *r.Rollback.RequestedBy != "deployer" {
		t.Errorf("rollback %+v", r.Rollback)
	}
	if len(r.OperatorTodo) != 2 || r.OperatorTodo[0].Step != "트래픽 차단" || r.OperatorTodo[1].Step != "call the on-call DBA" ||
		r.OperatorTodo[0].Note != report.NoteNothingUndone {
		t.Errorf("operator_todo %+v", r.OperatorTodo)
	}
	md := report.Markdown(&r, rr.QcSummary)
	if !strings.Contains(md, "## Operator to-do") || !strings.Contains(md, "| 1 | 트래픽 차단 | rollback |") {
		t.Errorf("markdown:\n%s", md)
	}
}
