package report

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// The report says how much of the watch window was observed: in full on a
// window its monitor watched from start to end ("observed 1800 s of
// 1800 s", no issue), and, for a window the monitor was down for longer
// than it may make up, the part observed, the ticks missed and the time
// down, as a CRITICAL issue, in the JSON's monitoring object and in the
// Markdown's Monitoring section.
func TestReportSaysHowMuchOfTheWindowWasObserved(t *testing.T) {
	t.Parallel()
	opened := timestamppb.New(t0.Add(61 * time.Second))

	h := successRun()
	for _, ev := range h.events {
		if mc := ev.GetMonitorCompleted(); mc != nil {
			mc.WindowOpened, mc.WindowMs, mc.ObservedMs = opened, 1800000, 1800000
		}
	}
	res := generate(t, h)
	if m := res.Report.Monitoring; m == nil || m.Observed != "observed 1800 s of 1800 s" || m.MissedTicks != 0 {
		t.Errorf("monitoring = %+v; want the whole window observed", m)
	}
	for _, is := range res.Report.Issues {
		if is.Type == "MONITOR" {
			t.Errorf("issue %+v on a window watched in full", is)
		}
	}
	if res.Status != "SUCCESS" {
		t.Errorf("status %s", res.Status)
	}

	// Not watched: the monitor came back about 9 s after a 3 s window's
	// end, having judged one tick of ten; it asked for the rollback.
	h = deployed()
	reason := "not watched: monitor down for 11.7 s"
	h.at(75*time.Second, "rollback.requested", &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{
		Reason: reason, RequestedBy: "monitor", NoData: true}})
	h.at(75*time.Second+10*time.Millisecond, "monitor.completed", &runbookv1.Event_MonitorCompleted{MonitorCompleted: &runbookv1.MonitorCompleted{
		Samples: 2, Reason: reason, RollbackRequested: true, WindowOpened: opened,
		WindowMs: 3000, ObservedMs: 300, MissedTicks: 9, DownMs: 11700}})
	h.at(76*time.Second, "rollback.started", &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{
		Reason: reason, RequestedBy: "monitor", Steps: 1}})
	h.at(80*time.Second, "rollback.done", &runbookv1.Event_RollbackDone{RollbackDone: &runbookv1.DeployFinished{StepsSucceeded: 1}})
	res = generate(t, h)
	if res.Status != "ROLLED_BACK" {
		t.Errorf("status %s; want ROLLED_BACK", res.Status)
	}
	want := "observed 0.3 s of 3 s; the monitor was down 11.7 s (9 tick(s) missed)"
	m := res.Report.Monitoring
	if m == nil || m.Observed != want || m.WindowMS != 3000 || m.ObservedMS != 300 || m.MissedTicks != 9 || m.DownMS != 11700 || m.Reason != reason {
		t.Fatalf("monitoring = %+v; want %q", m, want)
	}
	var critical bool
	for _, is := range res.Report.Issues {
		if is.Type == "MONITOR" && is.Severity == SeverityCritical && is.Message == "watch window "+want {
			critical = true
		}
	}
	if !critical || res.Report.Summary.CriticalIssues < 1 {
		t.Errorf("issues %+v; want a CRITICAL MONITOR issue: watch window %s", res.Report.Issues, want)
	}
	var doc struct {
		Monitoring map[string]any `json:"monitoring"`
	}
	if err := json.Unmarshal(res.JSON, &doc); err != nil || doc.Monitoring["observed"] != want || doc.Monitoring["down_ms"] != float64(11700) {
		t.Errorf("report JSON monitoring = %v (%v)", doc.Monitoring, err)
	}
	if r := res.Report.Rollback.Reason; r == nil || *r != reason {
		t.Errorf("rollback reason %v; want %q", r, reason)
	}
	md := Markdown(&res.Report, res.QCSummary)
	if !strings.Contains(md, "## Monitoring\n\nWatch window: "+want+".\n\nThe window closed: "+reason+".\n") {
		t.Errorf("markdown lacks the Monitoring section:\n%s", md)
	}
}
