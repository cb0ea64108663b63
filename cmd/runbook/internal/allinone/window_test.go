package allinone_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// windowPlan is a trivial plan with a timeline and a change type.
func windowPlan(id, typ, timeline, approval string) []byte {
	return []byte(fmt.Sprintf(`change_request: {id: %s, title: "window", type: %s, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
timeline:
%s%s
deploy:
  steps:
    - {name: noop, command: {argv: ["true"]}}
`, id, typ, timeline, approval))
}

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// deployStartedAt is when run's deploy started.
func deployStartedAt(t *testing.T, evs []*runbookv1.Event) time.Time {
	t.Helper()
	i := index(evs, "deploy.started")
	if i < 0 {
		t.Fatalf("no deploy.started: %v", types(evs))
	}
	return evs[i].GetTime().AsTime()
}

// Issue 3's change window: planned_start holds the deploy until then, an
// emergency change starts at once, a past planned_start (the seed's) is an
// open window, and a window that ends before the run could start expires it.
func TestChangeWindow(t *testing.T) {
	p := startPipeline(t, nil)

	t.Run("held until planned_start", func(t *testing.T) {
		t.Parallel()
		start := time.Now().Add(3 * time.Second).Truncate(time.Second).Add(time.Second)
		run := p.submit(t, windowPlan("CR-WIN", "maintenance", "  planned_start: \""+rfc(start)+"\"\n", ""))
		w := p.waitEvent(t, run, "run.waiting", 30*time.Second, nil).GetRunWaiting()
		if len(w.GetWaitingFor()) != 1 || w.GetWaitingFor()[0] != "change_window" || !w.GetUntil().AsTime().Equal(start) || w.GetDeadline() != nil {
			t.Fatalf("run.waiting %v", w)
		}
		if code, out, _ := p.runCLI(t, "runs"); code != 0 || !strings.Contains(out, "WAITING_WINDOW") || !strings.Contains(out, "window until "+start.UTC().Format(time.RFC3339)) {
			t.Errorf("runs: exit %d\n%s", code, out)
		}
		if rr := p.report(t, run, 30*time.Second); rr.Status != "SUCCESS" {
			t.Fatalf("ended %s", rr.Status)
		}
		evs := p.history(t, run)
		if at := deployStartedAt(t, evs); at.Before(start) {
			t.Errorf("deploy started at %s, before the window opened at %s", at, start)
		}
		if n := countType(evs, "run.waiting"); n != 1 {
			t.Errorf("%d run.waiting, want 1", n)
		}
	})

	t.Run("emergency starts at once", func(t *testing.T) {
		t.Parallel()
		run := p.submit(t, windowPlan("CR-EMG", "emergency", "  planned_start: \""+rfc(time.Now().Add(time.Hour))+"\"\n", ""))
		if rr := p.report(t, run, 30*time.Second); rr.Status != "SUCCESS" {
			t.Fatalf("ended %s", rr.Status)
		}
		if evs := p.history(t, run); index(evs, "run.waiting") >= 0 {
			t.Errorf("an emergency change waited: %v", types(evs))
		}
	})

	t.Run("planned_start in the past is an open window", func(t *testing.T) {
		t.Parallel()
		run := p.submit(t, windowPlan("CR-PAST", "maintenance", "  planned_start: \"2025-09-23T02:00:00Z\"\n  planned_completion: \"2025-09-23T04:00:00Z\"\n", ""))
		if rr := p.report(t, run, 30*time.Second); rr.Status != "SUCCESS" {
			t.Fatalf("ended %s", rr.Status)
		}
		if evs := p.history(t, run); index(evs, "run.waiting") >= 0 {
			t.Errorf("waited for a window that is open: %v", types(evs))
		}
	})

	t.Run("window ends while waiting for approval", func(t *testing.T) {
		t.Parallel()
		end := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
		run := p.submit(t, windowPlan("CR-END", "maintenance", "  window_end: \""+rfc(end)+"\"\n", "approval:\n  business_approval: {approver: Bob}\n"))
		w := p.waitEvent(t, run, "run.waiting", 30*time.Second, nil).GetRunWaiting()
		if !w.GetDeadline().AsTime().Equal(end) || w.GetWaitingFor()[0] != "business_approval" {
			t.Errorf("run.waiting %v", w)
		}
		rr := p.report(t, run, 30*time.Second)
		evs := p.history(t, run)
		if rr.Status != "EXPIRED" {
			t.Fatalf("ended %s: %v", rr.Status, types(evs))
		}
		exp := evs[index(evs, "run.expired")]
		if r := exp.GetRunExpired().GetReason(); !strings.Contains(r, "the change window ended at "+rfc(end)) || !strings.Contains(r, "business_approval") {
			t.Errorf("run.expired says %q", r)
		}
		if exp.GetTime().AsTime().Before(end) {
			t.Errorf("expired at %s, before the window end %s", exp.GetTime().AsTime(), end)
		}
		if !strings.Contains(rr.QcSummary, "EXPIRED") {
			t.Errorf("QC summary:\n%s", rr.QcSummary)
		}
	})
}

// A run held for its window starts when the window opens, also when
// `runbook serve` was restarted while it waited: the deployer's message is
// redelivered to the new process, which resumes the same wait (the window
// comes from the plan, not from when the wait began).
func TestWindowWaitSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	first := startPipeline(t, func(o *allinone.Options) { o.DataDir = dir; o.NoSync = false })
	start := time.Now().Add(6 * time.Second).Truncate(time.Second).Add(time.Second)
	run := first.submit(t, windowPlan("CR-RESTART", "maintenance", "  planned_start: \""+rfc(start)+"\"\n", ""))
	first.waitEvent(t, run, "run.waiting", 30*time.Second, nil)
	first.stop()
	if stopped := time.Now(); !stopped.Before(start) {
		t.Fatalf("stopping took until %s, past the window's opening %s: cannot show the wait surviving the restart", stopped, start)
	}

	second := startPipeline(t, func(o *allinone.Options) { o.DataDir = dir })
	if rr := second.report(t, run, 60*time.Second); rr.Status != "SUCCESS" {
		t.Fatalf("ended %s: %v", rr.Status, types(second.history(t, run)))
	}
	evs := second.history(t, run)
	if at := deployStartedAt(t, evs); at.Before(start) {
		t.Errorf("deploy started at %s, before the window opened at %s", at, start)
	} else if late := at.Sub(start); late > 5*time.Second {
		t.Errorf("deploy started %s after the window opened", late)
	} else {
		t.Logf("deploy started %s after the window opened (serve restarted while it waited)", late)
	}
	noDuplicateIDs(t, evs)
	if n := countType(evs, "run.waiting"); n != 1 {
		t.Errorf("%d run.waiting after the restart, want the one from before it", n)
	}
}
