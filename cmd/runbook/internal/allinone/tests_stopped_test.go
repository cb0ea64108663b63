package allinone_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// longLoadTest replaces the example plan's tests with two smoke tests the
// bad release passes and a load test far longer than the watch window, so
// that the monitor's rollback always comes while the load test runs.
func longLoadTest(url string) func(string) string {
	return func(s string) string {
		i := strings.Index(s, "\ntest:\n")
		if i < 0 {
			panic("example plan without a test section")
		}
		return shorten(s[:i]) + testSection(url)
	}
}

func testSection(url string) string {
	return `
test:
  smoke:
    - {name: "GET /api/v1/health", request: {url: "` + url + `/api/v1/health"}, expect: {status: 200}}
    - {name: "Prometheus Metrics", request: {url: "` + url + `/metrics"}, expect: {status: 200}}
  load:
    vus: 3
    duration: 120s
    think_time: 100ms
    abort_early: false
    requests:
      - {method: GET, url: "` + url + `/api/v1/health"}
      - {method: GET, url: "` + url + `/api/v1/estimates"}
    gates: {p95_ms: 2100, error_rate: 0.01}
`
}

// The bad release is rolled back by the monitor while its load test runs:
// the tester stops at once, its one outcome (test.failed, stopped) is the
// only test event after rollback.started, and the report shows the tests
// as stopped — not "0/0", not results of the restored old release.
func TestMonitorRollbackStopsTheTests(t *testing.T) {
	tg := startTarget(t)
	p := startPipeline(t, nil)

	run := p.submit(t, examplePlan(t, "bad-release.yaml", tg, longLoadTest(tg.url)))
	start := time.Now()
	rr := p.report(t, run, 60*time.Second)
	if took := time.Since(start); took > 60*time.Second {
		t.Errorf("report after %v", took)
	}
	evs := p.history(t, run)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("events: %v\nQC summary:\n%s", types(evs), rr.QcSummary)
		}
	})
	if rr.Status != "ROLLED_BACK" {
		t.Fatalf("bad release ended %s", rr.Status)
	}
	req := evs[index(evs, "rollback.requested")].GetRollbackRequested()
	if req.GetRequestedBy() != "monitor" {
		t.Fatalf("first rollback.requested by %q, want the monitor", req.GetRequestedBy())
	}

	// After rollback.started: no test event but the stopped outcome.
	started, done, outcome := index(evs, "rollback.started"), index(evs, "rollback.done"), index(evs, "test.failed")
	for i := started + 1; i < len(evs); i++ {
		if typ := evs[i].Type; strings.HasPrefix(typ, "test.") && i != outcome {
			t.Errorf("%s at %d after rollback.started (%d)", typ, i, started)
		}
	}
	if outcome < 0 {
		t.Fatal("no test outcome")
	}
	o := evs[outcome].GetTestFailed()
	if !strings.HasPrefix(o.GetStopped(), "rollback started by monitor: ") || !strings.HasPrefix(o.GetReason(), "stopped: rollback started by monitor") ||
		o.GetRollbackRequested() || o.GetPassed() != 2 || o.GetFailed() != 0 {
		t.Errorf("outcome %v, want the stopped one", o)
	}
	if l := o.GetLoad(); l == nil || l.GetRequests() == 0 || l.GetDurationMs() > 30_000 || !strings.Contains(l.GetReason(), "gates not judged") {
		t.Errorf("partial load test %v: want what it measured before the stop, far short of its 120s", l)
	}
	for _, typ := range []string{"test.load.passed", "test.load.failed", "test.passed"} {
		if index(evs, typ) >= 0 {
			t.Errorf("%s published: the load test was not stopped", typ)
		}
	}
	for _, e := range evs {
		if r := e.GetRollbackRequested(); r != nil && r.GetRequestedBy() == "tester" {
			t.Error("the tester asked for a rollback already under way")
		}
	}

	// The report: the smoke tests that completed, and the stop.
	var rep struct {
		Tests struct {
			SmokeTests       []struct{ Name, Status, Details string } `json:"smoke_tests"`
			PerformanceTests []struct{ Name, Status, Details string } `json:"performance_tests"`
		} `json:"tests"`
		Issues []struct{ Severity, Type, Message string } `json:"issues"`
	}
	if err := json.Unmarshal([]byte(rr.ReportJson), &rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rr.QcSummary, "\nSmoke Tests: 2/2 passed\n") || len(rep.Tests.SmokeTests) != 2 {
		t.Errorf("smoke tests in the report: %+v", rep.Tests.SmokeTests)
	}
	var stopIssue string
	for _, i := range rep.Issues {
		if i.Type == "TEST" && strings.HasPrefix(i.Message, "tests stopped: rollback started by monitor") {
			stopIssue = i.Message
			if i.Severity != "WARNING" {
				t.Errorf("stop issue severity %s", i.Severity)
			}
		}
	}
	// Whether the tester stopped before or after the deployer had restored
	// the old release (rollback.done), the reporter waits for its outcome:
	// the partial results are in the report.
	t.Logf("stopped outcome at %d, rollback.started at %d, rollback.done at %d; load %v", outcome, started, done, rep.Tests.PerformanceTests)
	if len(rep.Tests.PerformanceTests) != 1 || rep.Tests.PerformanceTests[0].Status != "STOPPED" ||
		!strings.Contains(stopIssue, "the load test was stopped after") {
		t.Errorf("load test in the report %+v, issue %q", rep.Tests.PerformanceTests, stopIssue)
	}
	if stopIssue == "" {
		t.Errorf("the report does not say the tests were stopped: %+v", rep.Issues)
	}
}
