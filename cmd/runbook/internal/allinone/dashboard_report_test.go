package allinone_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/services/reporter/report"
)

// pageRun is what the dashboard's run page shows, read from its DOM (the
// data- attributes app.js writes, and the text a person reads).
type pageRun struct {
	Status       string `json:"status"`
	ReportStatus string `json:"reportStatus"`
	Final        bool   `json:"final"`
	Overall      string `json:"overall"`
	Performance  string `json:"performance"`
	QC           string `json:"qc"`
	TestsNone    bool   `json:"testsNone"`
	Tests        []struct {
		Type, Name, Status, Shown string
	} `json:"tests"`
	Steps []struct {
		Phase, List, Name, Status, Shown, Cell string
		Index                                  int
		Manual                                 bool
	} `json:"steps"`
	Metrics []struct {
		Metric, Value, Text string
	} `json:"metrics"`
	Todo          []string `json:"todo"`
	RollbackShown bool     `json:"rollbackShown"`
	Reason        string   `json:"reason"`
	Load          string   `json:"load"`
}

// readRunPage reads the run page now shown.
const readRunPage = `(() => {
  const q = s => document.querySelector(s);
  const all = (s, f) => [...document.querySelectorAll(s)].map(f);
  const field = n => q('#report-summary [data-field="' + n + '"]')?.textContent ?? "";
  return {
    status: q("#run").dataset.status,
    reportStatus: field("status"),
    final: q("#report").hasAttribute("data-final"),
    overall: field("overall_status"),
    performance: field("performance_status"),
    qc: q("#qc-summary")?.textContent ?? "",
    testsNone: !!q("#tests-none"),
    tests: all("#tests tbody tr", tr => ({Type: tr.dataset.testType, Name: tr.dataset.testName, Status: tr.dataset.testStatus,
      Shown: tr.children[2].textContent})),
    steps: all("#steps tbody tr", tr => ({Phase: tr.dataset.stepPhase, List: tr.dataset.stepList, Index: Number(tr.dataset.stepIndex),
      Name: tr.dataset.stepName, Status: tr.dataset.stepStatus, Manual: tr.hasAttribute("data-manual"),
      Shown: tr.children[2].textContent, Cell: tr.children[4].textContent})),
    metrics: all("#report-summary dd[data-metric]", dd => ({Metric: dd.dataset.metric, Value: dd.dataset.value, Text: dd.textContent})),
    todo: all("#operator-todo li", li => li.dataset.step),
    rollbackShown: !!q("#report-rollback"),
    reason: q('#report-rollback [data-field="reason"]')?.textContent ?? "",
    load: q("#load")?.dataset.status ?? "",
  };
})()`

// The dashboard's run page shows what the report says. Three runs — the
// good release (SUCCESS), the bad one (ROLLED_BACK, with the plan's
// described rollback steps) and the bad one whose tests the monitor's
// rollback stopped mid load test — each opened in a real headless
// Chromium; the page's status, every test's name and status, every deploy
// and rollback step's name and status (manual ones MANUAL, "manual — not
// executed"), the QC summary, the verdict, the error rate and p95 shown
// and the operator's to-do are compared with report.ready's report_json.
func TestDashboardRunPageIsTheReport(t *testing.T) {
	chrome := chromium(t)
	p := startPipeline(t, func(o *allinone.Options) { o.HTTPListen = "127.0.0.1:0" })
	good, bad, stopped := startTarget(t), startTarget(t), startTarget(t)
	runs := []struct {
		name, run, status string
	}{
		{"success", p.submit(t, examplePlan(t, "good.yaml", good, shorten)), "SUCCESS"},
		{"rolled_back", p.submit(t, examplePlan(t, "bad-release.yaml", bad, shorten)), "ROLLED_BACK"},
		{"tests_stopped", p.submit(t, examplePlan(t, "bad-release.yaml", stopped, longLoadTest(stopped.url))), "ROLLED_BACK"},
	}
	base := "http://" + p.srv.HTTPAddr()

	ctx := browser(t, chrome)

	for _, c := range runs {
		rr := p.report(t, c.run, 90*time.Second)
		if rr.Status != c.status {
			t.Fatalf("%s: run %s ended %s, want %s", c.name, c.run, rr.Status, c.status)
		}
		var rep report.Report
		if err := json.Unmarshal([]byte(rr.ReportJson), &rep); err != nil {
			t.Fatalf("%s: report_json: %v", c.name, err)
		}

		sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
		err := chromedp.Do(sctx,
			chromedp.Navigate(base+"/#/runs/"+c.run),
			chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#run[data-run-id=%q][data-status=%q]`, c.run, c.status))),
			chromedp.WaitVisible(chromedp.CSS(`#report[data-final]`)),
			chromedp.WaitVisible(chromedp.CSS(`#qc-summary`)),
		)
		var page pageRun
		if err == nil {
			page, err = chromedp.Run(sctx, chromedp.Evaluate[pageRun](readRunPage))
		}
		var png []byte
		if err == nil {
			png, err = chromedp.Run(sctx, chromedp.FullScreenshot(100))
		}
		scancel()
		if err != nil {
			t.Fatalf("%s: run page of %s: %v", c.name, c.run, err)
		}
		name := filepath.Join(artifacts(t), "dashboard-report-"+c.name+".png")
		if err := os.WriteFile(name, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: screenshot %s", c.name, name)
		t.Run(c.name, func(t *testing.T) {
			comparePageWithReport(t, page, &rep, rr.QcSummary)
			switch c.name {
			case "rolled_back":
				// The plan's described rollback steps: MANUAL, the operator's to-do.
				var manual []string
				for _, s := range page.Steps {
					if s.Manual {
						manual = append(manual, s.Name)
					}
				}
				if !slices.Equal(manual, []string{"트래픽 차단", "트래픽 복구"}) || !slices.Equal(page.Todo, manual) {
					t.Errorf("manual steps %q, to-do %q", manual, page.Todo)
				}
			case "tests_stopped":
				// The smoke tests that completed and the stopped load test
				// (the page once said "Tests: none").
				if len(rep.Tests.SmokeTests) != 2 || len(rep.Tests.PerformanceTests) != 1 ||
					rep.Tests.PerformanceTests[0].Status != report.TestStopped || page.Load != report.TestStopped {
					t.Errorf("stopped tests: report %+v, load on the page %q", rep.Tests, page.Load)
				}
			}
		})
	}
}

// comparePageWithReport checks that the run page shows what the report
// says.
func comparePageWithReport(t *testing.T, page pageRun, rep *report.Report, qc string) {
	t.Helper()
	st := rep.Deployment.Status
	if page.Status != st || page.ReportStatus != st || !page.Final {
		t.Errorf("status on the page %q (report card %q, final %v), report %q", page.Status, page.ReportStatus, page.Final, st)
	}
	if page.QC != qc {
		t.Errorf("QC summary on the page:\n%s\nreport.ready's:\n%s", page.QC, qc)
	}
	if page.Overall != rep.Summary.OverallStatus {
		t.Errorf("overall on the page %q, report %q", page.Overall, rep.Summary.OverallStatus)
	}
	if !strings.HasPrefix(page.Performance, rep.Summary.PerformanceStatus) {
		t.Errorf("performance on the page %q, report %q", page.Performance, rep.Summary.PerformanceStatus)
	}

	// Every test, in the report's order (smoke, regression, performance).
	var want []string
	for _, group := range [][]report.TestCase{rep.Tests.SmokeTests, rep.Tests.RegressionTests, rep.Tests.PerformanceTests} {
		for _, tc := range group {
			want = append(want, tc.Type+" | "+tc.Name+" | "+tc.Status)
		}
	}
	var got []string
	for _, tc := range page.Tests {
		got = append(got, tc.Type+" | "+tc.Name+" | "+tc.Status)
		if tc.Shown != tc.Status {
			t.Errorf("test %s shows %q, its status is %s", tc.Name, tc.Shown, tc.Status)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("tests on the page:\n  %s\nin the report:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if len(want) == 0 || page.TestsNone {
		t.Errorf("the report lists %d tests; the page says none: %v", len(want), page.TestsNone)
	}

	// Every deploy and rollback step, at its latest attempt.
	want, got = nil, nil
	for _, s := range rep.Steps {
		want = append(want, fmt.Sprintf("%s/%s/%d | %s | %s", s.Phase, s.List, s.Index, s.Name, s.Status))
	}
	for _, s := range page.Steps {
		got = append(got, fmt.Sprintf("%s/%s/%d | %s | %s", s.Phase, s.List, s.Index, s.Name, s.Status))
		if s.Shown != s.Status {
			t.Errorf("step %s shows %q, its status is %s", s.Name, s.Shown, s.Status)
		}
		if manual := s.Status == report.StepManual; s.Manual != manual || manual && s.Cell != plan.ManualNotExecuted {
			t.Errorf("step %s (%s): manual %v, shows %q where a duration would be", s.Name, s.Status, s.Manual, s.Cell)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("steps on the page:\n  %s\nin the report:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if len(want) == 0 {
		t.Error("the report lists no steps")
	}

	// The error rate and p95 the QC summary prints, in their one unit.
	cur := map[string]*float64{report.MetricErrorRate: rep.Metrics.Current.ErrorRate, report.MetricP95: rep.Metrics.Current.ResponseTimeP95}
	if len(page.Metrics) != len(cur) {
		t.Errorf("metrics on the page %+v", page.Metrics)
	}
	for _, m := range page.Metrics {
		v, ok := cur[m.Metric]
		switch {
		case !ok:
			t.Errorf("metric %s on the page is not the report's", m.Metric)
		case v == nil:
			if m.Value != "" || !strings.HasPrefix(m.Text, report.Unknown) {
				t.Errorf("%s: the report measured nothing; the page shows %q (%q)", m.Metric, m.Text, m.Value)
			}
		default:
			shown, err := strconv.ParseFloat(m.Value, 64)
			if err != nil || shown != *v || !strings.HasPrefix(m.Text, plan.FormatMetric(m.Metric, *v)+" ") {
				t.Errorf("%s: the page shows %q (%q), the report %v (%s)", m.Metric, m.Text, m.Value, *v, plan.FormatMetric(m.Metric, *v))
			}
		}
	}

	// The rollback and the operator's to-do.
	if rep.Rollback.Executed != page.RollbackShown || rep.Rollback.Reason != nil && page.Reason != *rep.Rollback.Reason {
		t.Errorf("rollback on the page shown %v reason %q; report %+v", page.RollbackShown, page.Reason, rep.Rollback)
	}
	var todo []string
	for _, d := range rep.OperatorTodo {
		todo = append(todo, d.Step)
	}
	if !slices.Equal(page.Todo, todo) {
		t.Errorf("operator's to-do on the page %q, report %q", page.Todo, todo)
	}
}
