package reporter_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/metricstest"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// at sets an event's time (the fold's clock).
func at(ev *runbookv1.Event, t time.Time) *runbookv1.Event {
	ev.Time = timestamppb.New(t)
	return ev
}

// waitingRun is a run whose pre-flight passed at passed and that waits at
// the gate for waitingFor (roles, or "change_window" until until).
func waitingRun(runID string, passed time.Time, waitingFor []string, until time.Time) []*runbookv1.Event {
	w := &runbookv1.RunWaiting{WaitingFor: waitingFor, Reason: "held at the gate"}
	if !until.IsZero() {
		w.Until = timestamppb.New(until)
	}
	return []*runbookv1.Event{
		at(requested(runID), passed.Add(-time.Minute)),
		at(eventbus.New(runID, &runbookv1.Event_PreflightStarted{PreflightStarted: &runbookv1.PreflightStarted{Checks: 1}}), passed.Add(-time.Minute)),
		at(eventbus.New(runID, &runbookv1.Event_PreflightPassed{PreflightPassed: &runbookv1.PreflightResult{}}), passed),
		at(eventbus.New(runID, &runbookv1.Event_RunWaiting{RunWaiting: w}), passed),
	}
}

// The reporter's /metrics counts the runs not yet final by status and says
// how long the longest-waiting run has waited at the gate and how long
// past its window's opening a run still waits, all read from its read
// model at scrape time: they follow the runs as they move on.
func TestRunsGaugesFollowTheReadModel(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	r := start(t, s)
	srv := httptest.NewServer(promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	url := srv.URL + "/metrics"

	now := time.Now()
	publish(t, bus, requested("RUN-new"))
	publish(t, bus, waitingRun("RUN-approval", now.Add(-2*time.Hour), []string{"technical_approval"}, time.Time{})...)
	publish(t, bus, waitingRun("RUN-approval-2", now.Add(-time.Hour), []string{"business_approval"}, time.Time{})...)
	publish(t, bus, waitingRun("RUN-window", now.Add(-time.Hour), []string{"change_window"}, now.Add(-10*time.Minute))...)
	publish(t, bus, invalidRun("RUN-invalid")...)

	active := func(st runstate.Status) float64 {
		v, ok := metricstest.Scrape(t, url).Value("runbook_runs_active", "status", string(st))
		if !ok {
			t.Fatalf("no runbook_runs_active{status=%q} on the scrape", st)
		}
		return v
	}
	natstest.Eventually(t, 15*time.Second, "2 runs awaiting approval", func() bool { return active(runstate.AwaitingApproval) == 2 })
	got := metricstest.Scrape(t, url)
	want := map[runstate.Status]float64{runstate.Submitted: 1, runstate.AwaitingApproval: 2, runstate.WaitingWindow: 1}
	for _, st := range runstate.Statuses() {
		v, ok := got.Value("runbook_runs_active", "status", string(st))
		switch {
		case st.Final() && ok:
			t.Errorf("runbook_runs_active{status=%q} = %v: a final status is no active run", st, v)
		case !st.Final() && (!ok || v != want[st]):
			t.Errorf("runbook_runs_active{status=%q} = %v, %v; want %v", st, v, ok, want[st])
		}
	}
	between := func(name string, lo, hi time.Duration, labels ...string) {
		t.Helper()
		v, ok := got.Value(name, labels...)
		if !ok || v < lo.Seconds() || v > hi.Seconds() {
			t.Errorf("%s = %v, %v; want between %v and %v", metricstest.Series(name, labels...), v, ok, lo, hi)
		}
	}
	// The longest of the two approvals (2 h), counted from pre-flight passed.
	between("runbook_runs_waiting_seconds", 2*time.Hour, 2*time.Hour+time.Minute, "status", string(runstate.AwaitingApproval))
	between("runbook_runs_waiting_seconds", time.Hour, time.Hour+time.Minute, "status", string(runstate.WaitingWindow))
	between("runbook_runs_window_overdue_seconds", 10*time.Minute, 11*time.Minute)

	// The older approval is rejected, the window's run deploys.
	publish(t, bus,
		eventbus.New("RUN-approval", &runbookv1.Event_ApprovalRejected{ApprovalRejected: &runbookv1.Approval{Role: "technical_approval", Approver: "lee", Reason: "not now"}}),
		eventbus.New("RUN-window", &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}}))
	natstest.Eventually(t, 15*time.Second, "the window's run deploying", func() bool { return active(runstate.Deploying) == 1 })
	got = metricstest.Scrape(t, url)
	for st, w := range map[runstate.Status]float64{runstate.AwaitingApproval: 1, runstate.WaitingWindow: 0} {
		if v, _ := got.Value("runbook_runs_active", "status", string(st)); v != w {
			t.Errorf("runbook_runs_active{status=%q} = %v, want %v", st, v, w)
		}
	}
	between("runbook_runs_waiting_seconds", time.Hour, time.Hour+time.Minute, "status", string(runstate.AwaitingApproval))
	between("runbook_runs_waiting_seconds", 0, 0, "status", string(runstate.WaitingWindow))
	between("runbook_runs_window_overdue_seconds", 0, 0)
	if v, ok := got.Value("runbook_runs_gauge_errors_total"); !ok || v != 0 {
		t.Errorf("runbook_runs_gauge_errors_total = %v, %v; want 0", v, ok)
	}
	// No run ended ROLLBACK_FAILED, and the counter says so (present at
	// 0: an alert on its increase sees the first one).
	if v, ok := got.Value("runbook_runs_total", "status", string(runstate.RollbackFailed)); !ok || v != 0 {
		t.Errorf("runbook_runs_total{status=ROLLBACK_FAILED} = %v, %v; want present at 0", v, ok)
	}
}
