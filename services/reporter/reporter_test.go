package reporter_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/report"
)

const planYAML = `change_request: {id: CR-2025-001, title: "Order API v2", type: enhancement, priority: medium}
requester: {name: Kim Operator, role: DevOps, contact: ops@example.com}
`

func publish(t *testing.T, bus *eventbus.Bus, evs ...*runbookv1.Event) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ev := range evs {
		if _, err := bus.Publish(ctx, ev); err != nil {
			t.Fatalf("publish %s: %v", ev.GetType(), err)
		}
	}
}

func requested(runID string) *runbookv1.Event {
	ev := eventbus.New(runID, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		PlanYaml: planYAML, PlanSource: "plan.yaml", ChangeId: "CR-2025-001", Title: "Order API v2", Requester: "Kim Operator"}})
	ev.Actor = "kim"
	return ev
}

// successRun is every event of a run that deploys, passes its tests and
// ends its watch window without a rollback.
func successRun(runID string) []*runbookv1.Event {
	return []*runbookv1.Event{
		requested(runID),
		eventbus.New(runID, &runbookv1.Event_PreflightStarted{PreflightStarted: &runbookv1.PreflightStarted{Checks: 1}}),
		eventbus.New(runID, &runbookv1.Event_PreflightPassed{PreflightPassed: &runbookv1.PreflightResult{Checks: []*runbookv1.CheckResult{
			{Name: "db", Kind: "postgres", Status: runbookv1.CheckStatus_CHECK_STATUS_PASS, Blocking: true}}}}),
		eventbus.New(runID, &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}}),
		eventbus.New(runID, &runbookv1.Event_DeployStepSucceeded{DeployStepSucceeded: &runbookv1.StepEvent{Index: 0, Name: "roll out", List: "steps", Attempt: 1}}, 0, 1),
		eventbus.New(runID, &runbookv1.Event_DeployStepSucceeded{DeployStepSucceeded: &runbookv1.StepEvent{Index: 0, Name: "health", List: "health", Kind: "health", Attempt: 1}}, "health", 0, 1),
		eventbus.New(runID, &runbookv1.Event_DeployDone{DeployDone: &runbookv1.DeployFinished{StepsSucceeded: 1}}),
		eventbus.New(runID, &runbookv1.Event_TestPassed{TestPassed: &runbookv1.TestOutcome{Reason: "no tests in the plan"}}),
		eventbus.New(runID, &runbookv1.Event_MonitorCompleted{MonitorCompleted: &runbookv1.MonitorCompleted{
			Samples: 3, Last: map[string]float64{"api_response_time_p95": 700, "error_rate": 0}, Max: map[string]float64{"api_response_time_p95": 900, "error_rate": 0.001},
			Stats: map[string]*runbookv1.MetricStats{"api_response_time_p95": {P95: 900, Max: 900, Samples: 3}, "error_rate": {Mean: 0.001, Max: 0.001, Samples: 3}}}}),
	}
}

func invalidRun(runID string) []*runbookv1.Event {
	return []*runbookv1.Event{
		requested(runID),
		eventbus.New(runID, &runbookv1.Event_ChangeRejected{ChangeRejected: &runbookv1.ChangeRejected{Errors: []*runbookv1.PlanError{
			{Path: "deploy.steps[0].timeout", Line: 9, Column: 14, Value: "soon", Message: "not a duration"}}}}),
	}
}

// tWriter sends logs to the test's log: shown with -v or on failure.
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type running struct {
	svc  *reporter.Service
	reg  *prometheus.Registry
	stop func()
}

// start runs a reporter on s until stop (or the test's end).
func start(t *testing.T, s *server.Server) *running {
	t.Helper()
	return startWith(t, s, nil)
}

// startWith runs a reporter with the given read model (nil: a new one).
func startWith(t *testing.T, s *server.Server, model reporter.ReadModel) *running {
	t.Helper()
	return startOpts(t, s, reporter.Options{Model: model})
}

// startOpts runs a reporter with options o (RetryMin 50ms unless set).
func startOpts(t *testing.T, s *server.Server, o reporter.Options) *running {
	t.Helper()
	bus := natstest.Bus(t, s, "reporter/test")
	reg := prometheus.NewRegistry()
	if o.RetryMin == 0 {
		o.RetryMin = 50 * time.Millisecond
	}
	svc := reporter.New(bus, o,
		slog.New(slog.NewTextHandler(tWriter{t}, nil)), eventbus.NewMetrics(reg), reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("reporter stopped with: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("reporter did not stop")
		}
	}
	t.Cleanup(stop)
	return &running{svc: svc, reg: reg, stop: stop}
}

// reports returns every report.ready of a run.
func reports(t *testing.T, bus *eventbus.Bus, runID string) []*runbookv1.ReportReady {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hist, err := bus.RunHistory(ctx, runID)
	if err != nil {
		t.Fatal(err)
	}
	var out []*runbookv1.ReportReady
	for _, env := range hist {
		if r := env.Event.GetReportReady(); r != nil {
			out = append(out, r)
		}
	}
	return out
}

func waitReport(t *testing.T, bus *eventbus.Bus, runID string) *runbookv1.ReportReady {
	t.Helper()
	var got []*runbookv1.ReportReady
	natstest.Eventually(t, 15*time.Second, "report.ready of "+runID, func() bool {
		got = reports(t, bus, runID)
		return len(got) > 0
	})
	if len(got) != 1 {
		t.Fatalf("run %s has %d report.ready events, want 1", runID, len(got))
	}
	return got[0]
}

// checkReplay folds the run's history again and wants the published bytes.
func checkReplay(t *testing.T, bus *eventbus.Bus, runID string, rr *runbookv1.ReportReady) {
	t.Helper()
	hist, err := bus.RunHistory(context.Background(), runID)
	if err != nil {
		t.Fatal(err)
	}
	var evs []*runbookv1.Event
	for _, env := range hist {
		evs = append(evs, env.Event)
	}
	res, err := report.Generate(runID, evs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.JSON, []byte(rr.GetReportJson())) || res.QCSummary != rr.GetQcSummary() {
		t.Errorf("run %s: replaying the stream does not reproduce the published report", runID)
	}
}

func checkSummary(t *testing.T, rr *runbookv1.ReportReady, runID string, status runstate.Status) {
	t.Helper()
	if rr.GetStatus() != string(status) {
		t.Errorf("run %s: report status %s, want %s", runID, rr.GetStatus(), status)
	}
	lines := strings.Split(rr.GetQcSummary(), "\n")
	content := 0
	for _, l := range lines {
		if strings.Trim(l, "=") != "" {
			content++
		}
	}
	if len(lines) != report.QCLines || content != report.QCContentLines {
		t.Errorf("run %s: summary has %d lines (%d of content), want %d (%d):\n%s", runID, len(lines), content, report.QCLines, report.QCContentLines, rr.GetQcSummary())
	}
	if lines[2] != "Deployment ID: "+runID || lines[3] != "Status: "+string(status)+lines[3][len("Status: "+string(status)):] {
		t.Errorf("run %s: summary:\n%s", runID, rr.GetQcSummary())
	}
}

func TestReporter(t *testing.T) {
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")

	// 1. Live: a successful run and an invalid one, published while the
	// reporter runs.
	r1 := start(t, s)
	// Caught up with the (empty) stream: from then on, runs are reported live.
	select {
	case <-r1.svc.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the reporter did not catch up with an empty stream")
	}
	publish(t, bus, successRun("RUN-ok")...)
	publish(t, bus, invalidRun("RUN-bad")...)
	ok := waitReport(t, bus, "RUN-ok")
	checkSummary(t, ok, "RUN-ok", runstate.Success)
	if !strings.HasSuffix(ok.GetQcSummary(), "\nOverall: PASS - change deployed and verified") ||
		!strings.Contains(ok.GetQcSummary(), "\nAPI Health: HEALTHY\nDatabase: CONNECTED\nCache: not checked\nError Rate: 0.1% (threshold 1%, rollback above 1.5%)\nResponse Time P95: 900ms (threshold 2100ms, rollback above 3150ms)\n") {
		t.Errorf("success summary:\n%s", ok.GetQcSummary())
	}
	checkReplay(t, bus, "RUN-ok", ok)
	bad := waitReport(t, bus, "RUN-bad")
	checkSummary(t, bad, "RUN-bad", runstate.Invalid)
	if !strings.Contains(bad.GetReportJson(), `"critical_issues": 1`) {
		t.Errorf("invalid report:\n%s", bad.GetReportJson())
	}
	checkReplay(t, bus, "RUN-bad", bad)

	natstest.Eventually(t, 5*time.Second, "the model to fold its own report.ready", func() bool {
		run, err := r1.svc.Model().Run(context.Background(), "RUN-ok")
		return err == nil && run != nil && run.Report != nil && run.State.ReportReady
	})
	if got := testutil.ToFloat64(r1.svc.MetricsForTest().Runs.WithLabelValues("SUCCESS")); got != 1 {
		t.Errorf("runbook_runs_total{status=SUCCESS} = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(r1.reg, "runbook_phase_duration_seconds"); got == 0 {
		t.Errorf("no phase durations observed")
	}
	r1.stop()

	// 2. A run that ends while the reporter is down.
	publish(t, bus, successRun("RUN-late")...)

	// 3. Restart: a new process's read model, rebuilt from the stream.
	r2 := start(t, s)
	late := waitReport(t, bus, "RUN-late")
	checkSummary(t, late, "RUN-late", runstate.Success)
	checkReplay(t, bus, "RUN-late", late)
	// A run after the restart, reported live, shows the consumer has caught up.
	publish(t, bus, invalidRun("RUN-after")...)
	waitReport(t, bus, "RUN-after")
	for _, id := range []string{"RUN-ok", "RUN-bad", "RUN-late"} {
		if n := len(reports(t, bus, id)); n != 1 {
			t.Errorf("run %s has %d report.ready events after the restart, want 1", id, n)
		}
	}
	if got := testutil.ToFloat64(r2.svc.MetricsForTest().Reports); got != 2 {
		t.Errorf("the restarted reporter published %v reports, want 2 (RUN-late, RUN-after)", got)
	}

	natstest.Eventually(t, 5*time.Second, "the read model to hold every run", func() bool {
		runs, err := r2.svc.Model().Runs(context.Background(), reporter.RunFilter{})
		if err != nil || len(runs) != 4 {
			return false
		}
		want := map[string]runstate.Status{"RUN-ok": runstate.Success, "RUN-bad": runstate.Invalid, "RUN-late": runstate.Success, "RUN-after": runstate.Invalid}
		for _, r := range runs {
			if want[r.RunID] != r.Status || r.ChangeID != "CR-2025-001" || r.Title != "Order API v2" || r.Started.IsZero() || r.Ended.IsZero() {
				return false
			}
			run, err := r2.svc.Model().Run(context.Background(), r.RunID)
			if err != nil || run.Report == nil {
				return false
			}
		}
		return true
	})

	r2.stop()

	// 4. A model that survives the restart (as PostgreSQL does) goes on
	// from its position: the events before it are not applied again.
	model := reporter.NewMemory()
	r3 := startWith(t, s, model)
	<-r3.svc.Ready()
	pos, err := model.Position(context.Background())
	if err != nil || pos == 0 {
		t.Fatalf("position after catching up: %d, %v", pos, err)
	}
	r3.stop()
	publish(t, bus, successRun("RUN-late2")...)
	r4 := startWith(t, s, model)
	waitReport(t, bus, "RUN-late2")
	natstest.Eventually(t, 5*time.Second, "every run reported in the surviving model", func() bool {
		runs, err := model.Runs(context.Background(), reporter.RunFilter{})
		if err != nil || len(runs) != 5 {
			return false
		}
		again, _ := model.Unreported(context.Background())
		return len(again) == 0
	})
	for _, r := range []string{"RUN-ok", "RUN-late2"} {
		run, _ := model.Run(context.Background(), r)
		if n := len(run.Events); n != len(successRun(r))+1 {
			t.Errorf("run %s holds %d events, want %d: applied twice?", r, n, len(successRun(r))+1)
		}
	}
	r4.stop()
}
