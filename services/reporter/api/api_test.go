package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/api"
	"github.com/kis-core/runbook/services/reporter/pgstore"
	"github.com/kis-core/runbook/services/reporter/pgstore/pgtest"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

const planYAML = `change_request: {id: CR-1, title: "upgrade", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
deploy:
  steps:
    - {name: noop, command: {argv: ["true"]}}
monitor:
  window: 10s
  interval: 1s
  thresholds: {error_rate: 0.02}
`

// history builds events of one run, a second apart from start.
type history struct {
	run   string
	start time.Time
	evs   []*runbookv1.Event
}

func (h *history) add(payload any, idParts ...any) *history {
	ev := eventbus.New(h.run, payload, idParts...)
	ev.Time = timestamppb.New(h.start.Add(time.Duration(len(h.evs)) * time.Second))
	ev.Source = "test"
	h.evs = append(h.evs, ev)
	return h
}

func requested(change, title string) *runbookv1.Event_ChangeRequested {
	return &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		PlanYaml: planYAML, PlanSource: "plan.yaml", ChangeId: change, Title: title, Requester: "ops"}}
}

// succeeded is a whole successful run with checks, a step, an approval,
// a violation, tests and its report.
func succeeded(run, change string, start time.Time) *history {
	h := &history{run: run, start: start}
	h.add(requested(change, "upgrade "+run)).
		add(&runbookv1.Event_PreflightStarted{PreflightStarted: &runbookv1.PreflightStarted{Checks: 1}}).
		add(&runbookv1.Event_PreflightPassed{PreflightPassed: &runbookv1.PreflightResult{Checks: []*runbookv1.CheckResult{
			{Name: "health", Kind: "http", Status: runbookv1.CheckStatus_CHECK_STATUS_PASS, Value: "HTTP 200", Threshold: "200", DurationMs: 3, Blocking: true}}}}).
		add(&runbookv1.Event_PlanAssessed{PlanAssessed: &runbookv1.PlanAssessed{Level: "LOW"}}).
		add(&runbookv1.Event_ApprovalGranted{ApprovalGranted: &runbookv1.Approval{Role: "sre", Approver: "kim", Comment: "go"}}, "sre").
		add(&runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}}).
		add(&runbookv1.Event_DeployStepStarted{DeployStepStarted: &runbookv1.StepEvent{Index: 0, Name: "noop", Kind: "command", Attempt: 1, List: "steps"}}, 0, 1).
		add(&runbookv1.Event_DeployStepOutput{DeployStepOutput: &runbookv1.StepOutput{Index: 0, Stream: "stdout", Text: "hello"}}, 0, 1).
		add(&runbookv1.Event_DeployStepSucceeded{DeployStepSucceeded: &runbookv1.StepEvent{Index: 0, Name: "noop", Kind: "command", Attempt: 1, List: "steps", DurationMs: 7, OutputTail: "hello\n"}}, 0, 1).
		add(&runbookv1.Event_DeployDone{DeployDone: &runbookv1.DeployFinished{StepsSucceeded: 1}}).
		add(&runbookv1.Event_MonitorStarted{MonitorStarted: &runbookv1.MonitorStarted{Window: "10s", Interval: "1s"}}).
		add(&runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{Metric: "error_rate", Value: 0.03, Threshold: 0.02, Severity: "WARNING", Source: "http_probe"}}, 1).
		add(&runbookv1.Event_TestStarted{TestStarted: &runbookv1.TestStarted{SmokeTests: 1}}).
		add(&runbookv1.Event_TestSmokePassed{TestSmokePassed: &runbookv1.TestSuiteResult{Passed: 1, Tests: []*runbookv1.TestCase{{Name: "GET /health", Type: "smoke", Status: "PASS", DurationMs: 2}}}}).
		add(&runbookv1.Event_TestPassed{TestPassed: &runbookv1.TestOutcome{Passed: 1}}).
		add(&runbookv1.Event_MonitorCompleted{MonitorCompleted: &runbookv1.MonitorCompleted{Samples: 3, Violations: 1}}).
		add(&runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{Status: "SUCCESS", ReportJson: `{"deployment":{"id":"` + run + `"}}`, QcSummary: "QC line 1\nQC line 2"}})
	return h
}

// failedPreflight is a run that failed its pre-flight.
func failedPreflight(run, change string, start time.Time) *history {
	h := &history{run: run, start: start}
	h.add(requested(change, "broken "+run)).
		add(&runbookv1.Event_PreflightStarted{PreflightStarted: &runbookv1.PreflightStarted{Checks: 1}}).
		add(&runbookv1.Event_PreflightFailed{PreflightFailed: &runbookv1.PreflightResult{Reason: "health down", Checks: []*runbookv1.CheckResult{
			{Name: "health", Kind: "http", Status: runbookv1.CheckStatus_CHECK_STATUS_FAIL, Value: "HTTP 503", Blocking: true}}}})
	return h
}

// fixture is a read model fed with runs, an embedded NATS and the API on
// an httptest server.
type fixture struct {
	model reporter.ReadModel
	bus   *eventbus.Bus
	api   *api.API
	srv   *httptest.Server
	seq   uint64
}

func newFixture(t *testing.T, runs ...*history) *fixture {
	t.Helper()
	return newFixtureOn(t, reporter.NewMemory(), runs...)
}

// models are the read models the API is tested on: the same answers from
// each.
var models = []struct {
	name string
	open func(t *testing.T) reporter.ReadModel
}{
	{"memory", func(*testing.T) reporter.ReadModel { return reporter.NewMemory() }},
	{"postgres", func(t *testing.T) reporter.ReadModel {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := pgstore.Open(ctx, pgtest.URL(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		return st
	}},
}

// onEachModel runs fn against a fixture of runs on every read model.
func onEachModel(t *testing.T, runs []*history, fn func(t *testing.T, f *fixture)) {
	for _, m := range models {
		t.Run(m.name, func(t *testing.T) { fn(t, newFixtureOn(t, m.open(t), runs...)) })
	}
}

func newFixtureOn(t *testing.T, model reporter.ReadModel, runs ...*history) *fixture {
	t.Helper()
	return newFixtureWith(t, model, api.Options{}, runs...)
}

// newFixtureWith is newFixtureOn with options (Model, Bus and Heartbeat
// are the fixture's).
func newFixtureWith(t *testing.T, model reporter.ReadModel, o api.Options, runs ...*history) *fixture {
	t.Helper()
	ns := natstest.Server(t)
	f := &fixture{model: model, bus: natstest.Bus(t, ns, "api-test")}
	for _, h := range runs {
		f.apply(t, h.evs...)
	}
	o.Model, o.Bus, o.Heartbeat = f.model, f.bus, 50*time.Millisecond
	f.api = api.New(o)
	f.srv = httptest.NewServer(f.api.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) apply(t *testing.T, evs ...*runbookv1.Event) {
	t.Helper()
	envs := make([]eventbus.Envelope, len(evs))
	for i, ev := range evs {
		f.seq++
		envs[i] = eventbus.Envelope{Event: ev, Seq: f.seq, Subject: eventbus.Subject(ev.RunId, ev.Type)}
	}
	if err := f.model.ApplyBatch(context.Background(), f.seq-uint64(len(envs)), envs); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) get(t *testing.T, path string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

func (f *fixture) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	code, ct, body := f.get(t, path)
	if code != http.StatusOK || !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("GET %s: %d %s %s", path, code, ct, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, body)
	}
}

func fourRuns() []*history {
	return []*history{
		succeeded("run-a", "CR-1", t0),
		failedPreflight("run-b", "CR-2", t0.Add(time.Hour)),
		succeeded("run-c", "CR-2", t0.Add(2*time.Hour)),
		failedPreflight("run-d", "CR-3", t0.Add(3*time.Hour)),
	}
}

type runsPage struct {
	Runs []struct {
		RunID  string `json:"run_id"`
		Status string `json:"status"`
		Phase  string `json:"phase"`
	} `json:"runs"`
	NextOffset *int `json:"next_offset"`
}

func (p runsPage) ids() string {
	var ids []string
	for _, r := range p.Runs {
		ids = append(ids, r.RunID+":"+r.Status)
	}
	return strings.Join(ids, " ")
}

func TestListRuns(t *testing.T) {
	onEachModel(t, fourRuns(), func(t *testing.T, f *fixture) {
		for _, tc := range []struct {
			query, want string
			next        int // -1: none
		}{
			{"", "run-d:FAILED run-c:SUCCESS run-b:FAILED run-a:SUCCESS", -1},
			{"status=SUCCESS", "run-c:SUCCESS run-a:SUCCESS", -1},
			{"status=failed", "run-d:FAILED run-b:FAILED", -1},
			{"change_id=CR-2", "run-c:SUCCESS run-b:FAILED", -1},
			{"change_id=CR-2&status=SUCCESS", "run-c:SUCCESS", -1},
			{"change_id=CR-9", "", -1},
			{"since=" + url.QueryEscape(t0.Add(time.Hour).Format(time.RFC3339)), "run-d:FAILED run-c:SUCCESS run-b:FAILED", -1},
			{"until=" + url.QueryEscape(t0.Add(time.Hour).Format(time.RFC3339)), "run-a:SUCCESS", -1},
			{"since=" + url.QueryEscape(t0.Add(30*time.Minute).Format(time.RFC3339)) + "&until=" + url.QueryEscape(t0.Add(150*time.Minute).Format(time.RFC3339)), "run-c:SUCCESS run-b:FAILED", -1},
			{"limit=2", "run-d:FAILED run-c:SUCCESS", 2},
			{"limit=2&offset=2", "run-b:FAILED run-a:SUCCESS", -1},
			{"limit=3&offset=1", "run-c:SUCCESS run-b:FAILED run-a:SUCCESS", -1},
			{"limit=1&offset=1", "run-c:SUCCESS", 2},
			{"offset=10", "", -1},
		} {
			t.Run(tc.query, func(t *testing.T) {
				var p runsPage
				f.getJSON(t, "/api/v1/runs?"+tc.query, &p)
				if got := p.ids(); got != tc.want {
					t.Errorf("runs %q, want %q", got, tc.want)
				}
				switch {
				case tc.next < 0 && p.NextOffset != nil:
					t.Errorf("next_offset %d, want none", *p.NextOffset)
				case tc.next >= 0 && (p.NextOffset == nil || *p.NextOffset != tc.next):
					t.Errorf("next_offset %v, want %d", p.NextOffset, tc.next)
				}
			})
		}
		var p runsPage
		f.getJSON(t, "/api/v1/runs", &p)
		if p.Runs[0].Phase != "REPORT" {
			t.Errorf("phase of a final run %q, want REPORT", p.Runs[0].Phase)
		}
	})
}

func TestBadParameters(t *testing.T) {
	onEachModel(t, fourRuns(), func(t *testing.T, f *fixture) {
		for _, tc := range []struct {
			path, param, value, allowed string
		}{
			{"/api/v1/runs?status=DONE", "status", "DONE", "ROLLED_BACK"},
			{"/api/v1/runs?since=yesterday", "since", "yesterday", "RFC 3339"},
			{"/api/v1/runs?until=2026-13-01", "until", "2026-13-01", "RFC 3339"},
			{"/api/v1/runs?since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z", "until", "2026-03-01T00:00:00Z", "after since"},
			{"/api/v1/runs?limit=0", "limit", "0", "from 1 to 1000"},
			{"/api/v1/runs?limit=abc", "limit", "abc", "integer"},
			{"/api/v1/runs?limit=1001", "limit", "1001", "from 1 to 1000"},
			{"/api/v1/runs?offset=-1", "offset", "-1", "integer from 0"},
			{"/api/v1/runs?stauts=SUCCESS", "stauts", "SUCCESS", "status, change_id"},
			{"/api/v1/runs/run-a/events?after=x", "after", "x", "integer"},
			{"/api/v1/runs/run-a/events?limit=99999", "limit", "99999", "from 1 to 5000"},
			{"/api/v1/runs/run.a", "id", "run.a", "[A-Za-z0-9_-]"},
		} {
			t.Run(tc.path, func(t *testing.T) {
				code, ct, body := f.get(t, tc.path)
				if code != http.StatusBadRequest || ct != "application/json" {
					t.Fatalf("%d %s %s, want 400 JSON", code, ct, body)
				}
				var e struct{ Error, Parameter, Value, Allowed string }
				if err := json.Unmarshal([]byte(body), &e); err != nil {
					t.Fatal(err)
				}
				if e.Parameter != tc.param || e.Value != tc.value || !strings.Contains(e.Allowed, tc.allowed) || !strings.Contains(e.Error, tc.param) {
					t.Errorf("error %+v, want parameter %s value %q allowed ~%q", e, tc.param, tc.value, tc.allowed)
				}
			})
		}
	})
}

func TestUnknownRunIs404(t *testing.T) {
	onEachModel(t, fourRuns(), func(t *testing.T, f *fixture) {
		for _, p := range []string{"/api/v1/runs/nope", "/api/v1/runs/nope/events", "/api/v1/runs/nope/report", "/api/v1/runs/nope/summary", "/api/v1/runs/nope/metrics", "/api/v1/nothing"} {
			code, ct, body := f.get(t, p)
			if code != http.StatusNotFound || ct != "application/json" || !strings.Contains(body, `"error"`) {
				t.Errorf("GET %s: %d %s %s, want 404 JSON", p, code, ct, body)
			}
		}
		// A run without a report yet: report and summary are 404 and say why.
		for _, p := range []string{"/api/v1/runs/run-b/report", "/api/v1/runs/run-b/summary"} {
			if code, _, body := f.get(t, p); code != http.StatusNotFound || !strings.Contains(body, "no ") || !strings.Contains(body, "FAILED") {
				t.Errorf("GET %s: %d %s", p, code, body)
			}
		}
	})
}

func TestRunViewReportAndSummary(t *testing.T) {
	onEachModel(t, fourRuns(), func(t *testing.T, f *fixture) {
		var v api.View
		f.getJSON(t, "/api/v1/runs/run-a", &v)
		if v.RunID != "run-a" || v.Status != "SUCCESS" || v.ChangeID != "CR-1" || v.RiskLevel != "LOW" || v.State.FinalReason == "" {
			t.Errorf("summary %+v state %+v", v.RunSummary, v.State)
		}
		// The timeline leaves out step output, in stream order.
		var types []string
		for _, r := range v.Timeline {
			types = append(types, r.Type)
		}
		if len(types) != 16 || types[0] != "change.requested" || types[15] != "report.ready" || strings.Contains(strings.Join(types, " "), "deploy.step.output") {
			t.Errorf("timeline %v", types)
		}
		if row := v.Timeline[10]; row.Type != "threshold.violated" || row.Text != "⚠ WARNING error_rate = 3% > threshold 2% (source http_probe)" || row.Phase != "MONITOR" || row.Seq != 12 {
			t.Errorf("violation row %+v", row)
		}
		if len(v.Checks) != 1 || v.Checks[0].Status != "PASS" || v.Checks[0].Value != "HTTP 200" {
			t.Errorf("checks %+v", v.Checks)
		}
		if len(v.Steps) != 1 || v.Steps[0].Status != "SUCCEEDED" || v.Steps[0].OutputTail != "hello\n" || v.Steps[0].DurationMS != 7 || v.Steps[0].Started.IsZero() {
			t.Errorf("steps %+v", v.Steps)
		}
		if len(v.Approvals) != 1 || v.Approvals[0].Decision != "GRANTED" || v.Approvals[0].Approver != "kim" {
			t.Errorf("approvals %+v", v.Approvals)
		}
		if len(v.Violations) != 1 || v.Violations[0].Metric != "error_rate" || v.Violations[0].Value != 0.03 {
			t.Errorf("violations %+v", v.Violations)
		}
		if len(v.Tests) != 1 || v.Tests[0].Status != "PASS" {
			t.Errorf("tests %+v", v.Tests)
		}
		if v.QCSummary != "QC line 1\nQC line 2" {
			t.Errorf("qc %q", v.QCSummary)
		}

		code, ct, body := f.get(t, "/api/v1/runs/run-a/report")
		if code != 200 || ct != "application/json" || body != `{"deployment":{"id":"run-a"}}` {
			t.Errorf("report: %d %s %q", code, ct, body)
		}
		code, ct, body = f.get(t, "/api/v1/runs/run-a/summary")
		if code != 200 || !strings.HasPrefix(ct, "text/plain") || body != "QC line 1\nQC line 2\n" {
			t.Errorf("summary: %d %s %q", code, ct, body)
		}
	})
}

func TestEventsPaginate(t *testing.T) {
	onEachModel(t, fourRuns(), func(t *testing.T, f *fixture) {
		type page struct {
			Events []struct {
				Seq   uint64 `json:"seq"`
				Event struct {
					Type  string `json:"type"`
					RunID string `json:"runId"`
				} `json:"event"`
			} `json:"events"`
			NextAfter *uint64 `json:"next_after"`
		}
		var all []string
		after := uint64(0)
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("never reached the last page")
			}
			var p page
			f.getJSON(t, "/api/v1/runs/run-a/events?limit=5&after="+jsonNum(after), &p)
			for _, e := range p.Events {
				if e.Seq <= after || e.Event.RunID != "run-a" {
					t.Fatalf("event %+v after %d", e, after)
				}
				all = append(all, e.Event.Type)
			}
			if p.NextAfter == nil {
				if pages != 3 {
					t.Errorf("%d pages of 5 for 17 events, want 4", pages+1)
				}
				break
			}
			after = *p.NextAfter
		}
		// Every event, step output included.
		if len(all) != 17 || all[7] != "deploy.step.output" {
			t.Errorf("events %v", all)
		}
	})
}

func jsonNum(n uint64) string { b, _ := json.Marshal(n); return string(b) }

func TestMetricsFromTheMetricsStream(t *testing.T) {
	f := newFixture(t, fourRuns()...)
	ctx := context.Background()
	for i, v := range []float64{0.001, 0.03, 0.002} {
		for _, src := range []string{"http_probe", "prometheus_scrape"} {
			if err := f.bus.PublishSample(ctx, &runbookv1.MetricSample{RunId: "run-a", Metric: "error_rate", Value: v, Source: src, Time: timestamppb.New(t0.Add(time.Duration(11+i) * time.Second))}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Another run's samples stay out.
	if err := f.bus.PublishSample(ctx, &runbookv1.MetricSample{RunId: "run-c", Metric: "error_rate", Value: 9, Source: "http_probe"}); err != nil {
		t.Fatal(err)
	}
	var m api.Metrics
	f.getJSON(t, "/api/v1/runs/run-a/metrics", &m)
	if len(m.Series) != 2 || m.Series[0].Source != "http_probe" || m.Series[1].Source != "prometheus_scrape" {
		t.Fatalf("series %+v", m.Series)
	}
	if pts := m.Series[0].Points; len(pts) != 3 || pts[1].V != 0.03 || !pts[0].T.Equal(t0.Add(11*time.Second)) {
		t.Errorf("points %+v", pts)
	}
	// Thresholds: the plan's error_rate, the seed's defaults for the rest;
	// rollback limits at 1.5 x.
	if m.Thresholds["error_rate"] != 0.02 || m.Thresholds["api_response_time_p95"] != 2100 || m.RollbackLimits["error_rate"] != 0.03 {
		t.Errorf("thresholds %v limits %v", m.Thresholds, m.RollbackLimits)
	}
	// Limits: the plan's, every field the monitor enforces.
	var er *api.Limit
	for i, l := range m.Limits {
		if l.Metric == "error_rate" {
			er = &m.Limits[i]
		}
	}
	if er == nil || er.Threshold != 0.02 || er.Critical == nil || *er.Critical != 0.03 || !er.Derived || er.Factor != 1.5 || er.Unit != "fraction" ||
		er.N != 1 || er.M != 1 || er.NoData != "fail" || er.NoDataAfter != 3 || !er.Rollback || er.Shadow || er.Cite != "threshold 2%, rollback above 3%" {
		t.Errorf("error_rate limit %+v", er)
	}
	if !m.Window.Done || m.Window.Planned != "10s" || !m.Window.Start.Equal(t0.Add(10*time.Second)) || len(m.Violations) != 1 {
		t.Errorf("window %+v violations %+v", m.Window, m.Violations)
	}
}

func TestDashboardIsServed(t *testing.T) {
	f := newFixture(t)
	for path, want := range map[string]string{"/": `<script src="app.js">`, "/app.js": "EventSource(\"/api/v1/stream\")", "/style.css": "#alerts"} {
		code, _, body := f.get(t, path)
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, no %q", path, code, want)
		}
	}
	// No asset is fetched from anywhere else: the dashboard works offline.
	for _, path := range []string{"/", "/app.js", "/style.css"} {
		_, _, body := f.get(t, path)
		body = strings.ReplaceAll(body, `"http://www.w3.org/2000/svg"`, "") // the SVG namespace, not a fetch
		if strings.Contains(body, "http://") || strings.Contains(body, "https://") || strings.Contains(body, "//cdn") {
			t.Errorf("%s refers to another host", path)
		}
	}
}

// sse is one Server-Sent Event.
type sse struct{ id, event, data string }

// subscribe opens the live stream and returns its events.
func subscribe(t *testing.T, ctx context.Context, url string) (<-chan sse, <-chan struct{}) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/v1/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out, closed := make(chan sse, 64), make(chan struct{})
	go func() {
		defer close(closed)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var cur sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.event != "" {
					out <- cur
				}
				cur = sse{}
			case strings.HasPrefix(line, "id: "):
				cur.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				cur.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				cur.data = line[6:]
			case strings.HasPrefix(line, ": heartbeat"):
				out <- sse{event: "heartbeat"}
			}
		}
	}()
	return out, closed
}

// next waits for the first event of kind (whose data contains every
// of match), up to d.
func next(t *testing.T, ch <-chan sse, kind string, d time.Duration, match ...string) sse {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case e := <-ch:
			ok := e.event == kind
			for _, m := range match {
				ok = ok && strings.Contains(e.data, m)
			}
			if ok {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event within %s", kind, d)
		}
	}
}

func TestStreamAlertsAndRunChanges(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hubDone := make(chan error, 1)
	// Events before the stream started are not replayed — except the
	// latest alerts, which a client gets first when it connects (the
	// dashboard's live alerts are not empty on load).
	old := &history{run: "run-old", start: time.Now()}
	old.add(requested("CR-OLD", "old"))
	if _, err := f.bus.Publish(ctx, old.evs[0]); err != nil {
		t.Fatal(err)
	}
	before, err := f.bus.Publish(ctx, eventbus.New("run-before", &runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{
		Metric: "error_rate", Value: 0.2, Threshold: 0.01, Severity: "CRITICAL"}}, 1))
	if err != nil {
		t.Fatal(err)
	}
	go func() { hubDone <- f.api.Run(ctx) }()
	<-f.api.Ready()
	// The client's own context: only the server's shutdown may end its stream.
	cctx, ccancel := context.WithCancel(context.Background())
	defer ccancel()
	events, closed := subscribe(t, cctx, f.srv.URL)
	if e := next(t, events, "alert", 2*time.Second); e.id != jsonNum(before) || !strings.Contains(e.data, `"run_id":"run-before"`) {
		t.Errorf("first message %s %s; want the alert from before the stream started (seq %d)", e.id, e.data, before)
	}
	next(t, events, "heartbeat", 2*time.Second)

	// A threshold violation reaches the client as it happens.
	tv := eventbus.New("run-live", &runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{
		Metric: "api_response_time_p95", Value: 3500, Threshold: 2100, Severity: "CRITICAL", AutoRollback: true}}, 1)
	sent := time.Now()
	seq, err := f.bus.Publish(ctx, tv)
	if err != nil {
		t.Fatal(err)
	}
	e := next(t, events, "alert", time.Second)
	t.Logf("alert after %s", time.Since(sent))
	var a api.Violation
	if err := json.Unmarshal([]byte(e.data), &a); err != nil {
		t.Fatal(err)
	}
	if a.RunID != "run-live" || a.Metric != "api_response_time_p95" || a.Value != 3500 || a.Threshold != 2100 || a.Severity != "CRITICAL" || a.Time.IsZero() || e.id != jsonNum(seq) {
		t.Errorf("alert %+v id %s, want seq %d", a, e.id, seq)
	}

	// A run's status changes, one event each: a new run, then pre-flight.
	h := &history{run: "run-new", start: time.Now()}
	h.add(requested("CR-NEW", "new")).add(&runbookv1.Event_PreflightStarted{PreflightStarted: &runbookv1.PreflightStarted{Checks: 0}})
	for i, want := range []string{"SUBMITTED", "PREFLIGHT"} {
		if _, err := f.bus.Publish(ctx, h.evs[i]); err != nil {
			t.Fatal(err)
		}
		e := next(t, events, "run", 2*time.Second, `"run_id":"run-new"`)
		var c api.RunChange
		if err := json.Unmarshal([]byte(e.data), &c); err != nil {
			t.Fatal(err)
		}
		if c.RunID != "run-new" || string(c.Status) != want {
			t.Errorf("run change %+v, want run-new %s", c, want)
		}
	}
	// A run first seen mid-way is folded from its history: its earlier
	// events count, so an event that changes nothing sends no change.
	if _, err := f.bus.Publish(ctx, eventbus.New("run-old", &runbookv1.Event_PlanAssessed{PlanAssessed: &runbookv1.PlanAssessed{Level: "LOW"}})); err != nil {
		t.Fatal(err)
	}
	if _, err := f.bus.Publish(ctx, eventbus.New("run-old", &runbookv1.Event_PreflightStarted{PreflightStarted: &runbookv1.PreflightStarted{}})); err != nil {
		t.Fatal(err)
	}
	e = next(t, events, "run", 2*time.Second, `"run_id":"run-old"`)
	if !strings.Contains(e.data, `"status":"PREFLIGHT"`) {
		t.Errorf("first change of run-old %s, want PREFLIGHT (SUBMITTED came before the stream)", e.data)
	}

	// Shutdown ends every client's stream and Run returns nil.
	cancel()
	if err := <-hubDone; err != nil {
		t.Errorf("Run: %v", err)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the SSE stream stayed open after shutdown")
	}
}
