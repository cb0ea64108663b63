package allinone_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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

// artifacts is where test artifacts go: $RUNBOOK_ARTIFACTS, else
// <repo>/artifacts.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("RUNBOOK_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "artifacts")
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
	ectx, ecancel := context.WithTimeout(ctx, 5*time.Second)
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
	if qc := text(`#qc-summary`); !strings.Contains(qc, "ROLLED_BACK") {
		t.Errorf("QC summary on the page: %q", qc)
	}
	// The plan's described rollback step ("트래픽 차단") is MANUAL and
	// "manual — not executed", never SUCCEEDED in 0 ms.
	if steps := text(`#steps`); !strings.Contains(steps, "트래픽 차단") || !strings.Contains(steps, "MANUAL") || !strings.Contains(steps, "manual — not executed") {
		t.Errorf("steps table: %q", steps)
	}

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
