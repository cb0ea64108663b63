package allinone_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// chromium finds Debian's chromium (or $RUNBOOK_CHROMIUM). Without one the
// test fails under CI=true and is skipped, loudly, elsewhere.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("RUNBOOK_CHROMIUM"), "/usr/bin/chromium", "chromium"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	missing(t, "chromium not found: the dashboard's browser test needs it (apt-get install chromium, or set RUNBOOK_CHROMIUM)")
	return ""
}

// browser starts a headless Chromium for the test (stopped at its end) and
// returns its context.
func browser(t *testing.T, chrome string) context.Context {
	t.Helper()
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chrome),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1100),
	)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser (no deadline on this first call)
		t.Fatalf("start %s: %v", chrome, err)
	}
	return ctx
}

// artifacts is where test artifacts (the dashboard's screenshots) go:
// $RUNBOOK_ARTIFACTS_DIR (.ci/run sets <checkout>/artifacts/screenshots),
// else the test's own temporary directory.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("RUNBOOK_ARTIFACTS_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// The demo's two plans run to SUCCESS and ROLLED_BACK; the dashboard, in a
// real headless Chromium, lists both with those statuses, shows a run's
// timeline, and shows a threshold violation in its live alerts feed within
// one second of its publication.
func TestDashboardInChromium(t *testing.T) {
	chrome := chromium(t)
	tg := startTarget(t)
	p := startPipeline(t, func(o *allinone.Options) { o.HTTPListen = "127.0.0.1:0" })

	good := p.submit(t, examplePlan(t, "good.yaml", tg, shorten))
	if rr := p.report(t, good, 60*time.Second); rr.Status != "SUCCESS" {
		t.Fatalf("good plan ended %s", rr.Status)
	}
	base := "http://" + p.srv.HTTPAddr()

	ctx := browser(t, chrome)

	// do runs browser actions with a deadline of their own; get runs one
	// that returns a value.
	do := func(what string, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, d)
		defer scancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	screenshot := func() []byte {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		defer scancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		return png
	}
	row := func(run, status string) string {
		return fmt.Sprintf(`#runs tr[data-run-id=%q][data-status=%q]`, run, status)
	}

	// The runs list, open while the bad release runs: its row appears and
	// reaches ROLLED_BACK live, from the stream, without a reload.
	do("runs list", 20*time.Second,
		chromedp.Navigate(base+"/#/"),
		chromedp.WaitVisible(chromedp.CSS(row(good, "SUCCESS"))),
		chromedp.WaitVisible(chromedp.CSS(`#live[data-state="open"]`)),
	)
	bad := p.submit(t, examplePlan(t, "bad-release.yaml", tg, shorten))
	do("bad run live in the list", 60*time.Second, chromedp.WaitVisible(chromedp.CSS(row(bad, "ROLLED_BACK"))))
	if rr := p.report(t, bad, 60*time.Second); rr.Status != "ROLLED_BACK" {
		t.Fatalf("bad plan ended %s", rr.Status)
	}
	// And on a fresh load: both runs with their final statuses.
	do("runs list reloaded", 20*time.Second,
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(row(good, "SUCCESS"))),
		chromedp.WaitVisible(chromedp.CSS(row(bad, "ROLLED_BACK"))),
	)
	if g, b := text(row(good, "SUCCESS")+" td.status"), text(row(bad, "ROLLED_BACK")+" td.status"); g != "SUCCESS" || b != "ROLLED_BACK" {
		t.Errorf("runs list shows %q and %q, want SUCCESS and ROLLED_BACK", g, b)
	}
	// The run id is the first column; times are UTC, ISO 8601, until the
	// operator asks for local time.
	ectx, ecancel := context.WithTimeout(ctx, 5*time.Second)
	cols, err := chromedp.Run(ectx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#runs thead th")].map(th => th.textContent)`))
	ecancel()
	if err != nil || len(cols) == 0 || cols[0] != "Run" {
		t.Errorf("runs list columns %q (%v), want the run id first", cols, err)
	}
	if id := text(row(good, "SUCCESS") + " td:first-child"); id != good {
		t.Errorf("first cell of the good run's row: %q", id)
	}
	utc := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	local := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$`)
	if s := text(row(good, "SUCCESS") + " td.time"); !utc.MatchString(s) {
		t.Errorf("started %q: want UTC ISO 8601 by default", s)
	}
	do("local time", 10*time.Second, chromedp.Click(chromedp.CSS("#tz")), chromedp.WaitVisible(chromedp.CSS(`#tz[data-tz="local"]`)))
	if s := text(row(good, "SUCCESS") + " td.time"); !local.MatchString(s) {
		t.Errorf("started %q in local time: want ISO 8601 with the offset", s)
	}
	do("back to UTC", 10*time.Second, chromedp.Click(chromedp.CSS("#tz")), chromedp.WaitVisible(chromedp.CSS(`#tz[data-tz="utc"]`)))
	// Filters: by status, by change id.
	shown := func() []string {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		defer scancel()
		ids, err := chromedp.Run(sctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#runs tbody tr")].map(tr => tr.dataset.runId)`))
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	// filter sets a filter as a person would (its value, then its change
	// event), in the page in one step: the list re-renders on each.
	filter := func(sel, value string) chromedp.Action[chromedp.Void] {
		return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = %q; e.dispatchEvent(new Event("change")); })()`, sel, value))
	}
	do("status filter", 10*time.Second,
		filter("#status-filter", "ROLLED_BACK"),
		chromedp.WaitNotPresent(chromedp.CSS(row(good, "SUCCESS"))),
		chromedp.WaitVisible(chromedp.CSS(row(bad, "ROLLED_BACK"))))
	if ids := shown(); !slices.Equal(ids, []string{bad}) {
		t.Errorf("status ROLLED_BACK shows %v", ids)
	}
	do("change filter", 10*time.Second,
		filter("#status-filter", ""),
		chromedp.WaitVisible(chromedp.CSS(row(good, "SUCCESS"))),
		filter("#change-filter", "CR-2025-101"),
		chromedp.WaitNotPresent(chromedp.CSS(row(bad, "ROLLED_BACK"))),
		chromedp.WaitVisible(chromedp.CSS(row(good, "SUCCESS"))))
	if ids := shown(); !slices.Equal(ids, []string{good}) {
		t.Errorf("change CR-2025-101 shows %v", ids)
	}
	do("no filter", 10*time.Second,
		filter("#change-filter", ""),
		chromedp.WaitVisible(chromedp.CSS(row(bad, "ROLLED_BACK"))),
		chromedp.WaitVisible(chromedp.CSS(row(good, "SUCCESS"))))
	runsPNG := screenshot()

	// The rolled-back run's page: its timeline, in stream order, from the
	// request to the report; its charts and QC summary.
	do("run page", 20*time.Second,
		chromedp.Click(chromedp.CSS(row(bad, "ROLLED_BACK")+` td a`)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#run[data-run-id=%q][data-status="ROLLED_BACK"]`, bad))),
		chromedp.WaitVisible(chromedp.CSS(`#timeline li[data-type="rollback.done"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#charts .chart polyline.series`)),
		// The deploy's span is shaded: its samples are not judged.
		chromedp.WaitReady(chromedp.CSS(`#charts .chart rect.deploy-span`)),
	)
	ectx, ecancel = context.WithTimeout(ctx, 5*time.Second)
	timeline, err := chromedp.Run(ectx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#timeline li")].map(li => li.dataset.type)`))
	ecancel()
	if err != nil {
		t.Fatal(err)
	}
	if len(timeline) < 10 || timeline[0] != "change.requested" || timeline[len(timeline)-1] == "change.requested" {
		t.Errorf("timeline %v", timeline)
	}
	for _, typ := range []string{"preflight.passed", "deploy.done", "threshold.violated", "rollback.started", "rollback.done", "report.ready"} {
		if !slices.Contains(timeline, typ) {
			t.Errorf("timeline has no %s: %v", typ, timeline)
		}
	}
	// The phase bar shows where it stopped: rolled back during its tests.
	ectx, ecancel = context.WithTimeout(ctx, 5*time.Second)
	bar, err := chromedp.Run(ectx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#phases span")].map(s => s.dataset.phase + "=" + s.dataset.state)`))
	ecancel()
	if err != nil || strings.Join(bar, " ") != "PRE-FLIGHT=done PLAN=done ACT=done TEST=stopped REPORT=done" {
		t.Errorf("phase bar %v (%v)", bar, err)
	}
	checkCharts(t, ctx)
	// Every past alert of the run is listed on its page.
	if alerts := text(`#violations`); !strings.Contains(alerts, "error_rate") || !strings.Contains(alerts, "CRITICAL") {
		t.Errorf("alerts on the run page: %q", alerts)
	}
	if qc := text(`#qc-summary`); !strings.Contains(qc, "ROLLED_BACK") {
		t.Errorf("QC summary on the page: %q", qc)
	}
	// The plan's described rollback step ("트래픽 차단") is MANUAL and
	// "manual — not executed", never SUCCEEDED in 0 ms.
	if steps := text(`#steps`); !strings.Contains(steps, "트래픽 차단") || !strings.Contains(steps, "MANUAL") || !strings.Contains(steps, "manual — not executed") {
		t.Errorf("steps table: %q", steps)
	}

	// The live alerts feed is not empty on load: it lists the latest
	// alerts, the bad run's among them (they came before the page).
	do("the bad run's earlier alerts in the feed on load", 5*time.Second, chromedp.WaitVisible(chromedp.CSS(`#alerts li[data-run-id="`+bad+`"]`)))

	// A threshold violation published now shows in the live alerts feed
	// within a second.
	ev := eventbus.New(bad, &runbookv1.Event_ThresholdViolated{ThresholdViolated: &runbookv1.ThresholdViolated{
		Metric: "error_rate", Value: 0.42, Threshold: 0.01, Severity: "CRITICAL", Source: "dashboard-test"}}, "dashboard-test")
	sent := time.Now()
	seq, err := p.bus.Publish(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	li := fmt.Sprintf(`#alerts li[data-seq="%d"]`, seq)
	do("alert in the feed within 1s", time.Second-time.Since(sent), chromedp.WaitVisible(chromedp.CSS(li)))
	took := time.Since(sent)
	alert := text(li)
	t.Logf("alert on the page %s after its publication: %q", took, alert)
	// error_rate 0.42 reads 42% (one unit per metric, as CLI watch and the report).
	if !strings.Contains(alert, "error_rate = 42% > threshold 1%") || !strings.Contains(alert, "CRITICAL") || !strings.Contains(alert, bad) {
		t.Errorf("alert reads %q", alert)
	}

	runPNG := screenshot()
	dir := artifacts(t)
	for name, png := range map[string][]byte{"dashboard-runs.png": runsPNG, "dashboard-run.png": runPNG} {
		if len(png) < 1000 {
			t.Errorf("%s: %d bytes", name, len(png))
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", filepath.Join(dir, name))
	}
}

// chartFacts is one chart as drawn: its plot area, the top of its series
// (the highest value's y), its largest value, and the boxes of its limit
// labels (screen pixels).
type chartFacts struct {
	Metric    string     `json:"metric"`
	PlotTop   float64    `json:"plotTop"`
	PlotH     float64    `json:"plotH"`
	SeriesTop float64    `json:"seriesTop"`
	HasSeries bool       `json:"hasSeries"`
	VMax      float64    `json:"vmax"`
	Labels    []labelBox `json:"labels"`
	Edges     int        `json:"edges"`
	Lines     int        `json:"lines"`
}

type labelBox struct {
	Text string     `json:"text"`
	Box  [4]float64 `json:"box"` // left, top, width, height
}

const readCharts = `[...document.querySelectorAll("#charts .chart")].map(c => {
  const plot = c.querySelector("rect.plot").getBoundingClientRect();
  const lines = [...c.querySelectorAll("polyline.series")];
  const tops = lines.map(l => l.getBoundingClientRect().top);
  const vals = lines.flatMap(l => l.getAttribute("points").trim().split(/\s+/).filter(Boolean)).length;
  return {
    metric: c.dataset.metric, plotTop: plot.top, plotH: plot.height,
    seriesTop: tops.length ? Math.min(...tops) : 0, hasSeries: vals > 0,
    vmax: Number(c.querySelector("svg").dataset.vmax),
    labels: [...c.querySelectorAll("text.limit-label")].map(t => { const b = t.getBoundingClientRect(); return {text: t.textContent, box: [b.left, b.top, b.width, b.height]}; }),
    edges: c.querySelectorAll(".edge-marker").length,
    lines: c.querySelectorAll("line.threshold, line.rollback-limit").length,
  };
})`

// checkCharts reads the run page's charts in the browser: every chart is
// scaled to its data (its highest sample is drawn in the upper part of the
// plot, not flat at the bottom under a far-off limit) and no two limit
// labels overlap.
func checkCharts(t *testing.T, ctx context.Context) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	charts, err := chromedp.Run(sctx, chromedp.Evaluate[[]chartFacts](readCharts))
	if err != nil {
		t.Fatal(err)
	}
	if len(charts) == 0 {
		t.Fatal("no charts")
	}
	for _, c := range charts {
		t.Logf("chart %s: vmax %.4g, series top %.0f in plot %.0f+%.0f, %d lines, %d edge markers, labels %+v", c.Metric, c.VMax, c.SeriesTop, c.PlotTop, c.PlotH, c.Lines, c.Edges, c.Labels)
		if c.Lines+c.Edges != len(c.Labels) {
			t.Errorf("%s: %d lines and %d edge markers, %d labels", c.Metric, c.Lines, c.Edges, len(c.Labels))
		}
		// A series whose peak is above zero reaches the upper 60% of the
		// plot: the scale follows the data (a limit more than twice the
		// data is an edge marker, not the scale's top).
		if c.HasSeries && c.SeriesTop > c.PlotTop+0.6*c.PlotH && c.SeriesTop < c.PlotTop+c.PlotH-1 {
			t.Errorf("%s: the series peaks at %.0f px in a plot from %.0f to %.0f: drawn flat against the scale", c.Metric, c.SeriesTop, c.PlotTop, c.PlotTop+c.PlotH)
		}
		for i, a := range c.Labels {
			for _, b := range c.Labels[i+1:] {
				if a.Box[0] < b.Box[0]+b.Box[2] && b.Box[0] < a.Box[0]+a.Box[2] && a.Box[1] < b.Box[1]+b.Box[3] && b.Box[1] < a.Box[1]+a.Box[3] {
					t.Errorf("%s: labels %q %v and %q %v overlap", c.Metric, a.Text, a.Box, b.Text, b.Box)
				}
			}
			if a.Box[1] < c.PlotTop-1 || a.Box[1]+a.Box[3] > c.PlotTop+c.PlotH+1 {
				t.Errorf("%s: label %q %v outside the plot", c.Metric, a.Text, a.Box)
			}
		}
	}
}
