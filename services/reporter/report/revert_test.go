package report

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/runstate"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Both reports link: a revert run's report names the run it reverts (its
// plan's reverts), published; the reverted run's published report stays
// as it was — revert.requested comes after it — and readers add the runs
// that revert it (Link), in JSON, the link lines and the Markdown.
func TestRevertLinks(t *testing.T) {
	t.Parallel()
	// The reverted run: its revert.requested after its report.ready.
	h := successRun()
	h.at(40*time.Minute, "revert.requested", &runbookv1.Event_RevertRequested{RevertRequested: &runbookv1.RevertRequested{
		ByRun: "DEPLOY-2", ChangeId: "REVERT-CR-2025-001", Reason: "wrong estimates", RequestedBy: "oncall"}})
	res := generate(t, h)
	if res.Report.RevertedBy != nil || strings.Contains(string(res.JSON), "reverted_by") {
		t.Fatalf("the published report holds a later revert: %s", res.JSON)
	}
	r := res.Report
	r.Link(runstate.Fold(runID, h.events))
	want := RunLink{Run: "DEPLOY-2", ChangeID: "REVERT-CR-2025-001", Reason: "wrong estimates", RequestedBy: "oncall"}
	if len(r.RevertedBy) != 1 || r.RevertedBy[0] != want {
		t.Fatalf("reverted_by = %+v", r.RevertedBy)
	}
	eq(t, "link lines", strings.Join(LinkLines(&r), "\n"), "Reverted by: run DEPLOY-2 (REVERT-CR-2025-001), requested by oncall — wrong estimates (runbook report DEPLOY-2)")
	if md := Markdown(&r, res.QCSummary); !strings.Contains(md, "\n**Reverted by** run DEPLOY-2 (REVERT-CR-2025-001)") {
		t.Errorf("markdown:\n%s", md)
	}

	// The revert run: reverts, from its own plan, in the published JSON.
	rv := &history{}
	rv.at(0, "change.requested", &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		PlanYaml: "change_request: {id: REVERT-CR-2025-001, title: t}\nreverts: {run: " + runID + ", change_id: CR-2025-001, reason: wrong estimates}\n",
		ChangeId: "REVERT-CR-2025-001",
	}}, "oncall")
	res = generate(t, rv)
	var js struct {
		Reverts *RunLink `json:"reverts"`
	}
	if err := json.Unmarshal(res.JSON, &js); err != nil {
		t.Fatal(err)
	}
	if want := (RunLink{Run: runID, ChangeID: "CR-2025-001", Reason: "wrong estimates", RequestedBy: "oncall"}); js.Reverts == nil || *js.Reverts != want {
		t.Fatalf("reverts = %+v, want %+v", js.Reverts, want)
	}
	eq(t, "link lines", strings.Join(LinkLines(&res.Report), "\n"), "Reverts: run "+runID+" (CR-2025-001), requested by oncall — wrong estimates (runbook report "+runID+")")
}
