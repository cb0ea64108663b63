package allinone_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Acting from the dashboard, in a real headless Chromium against runbook
// serve (embedded NATS, the real deployer): tina, an approver, signs in
// with her token, loads her key file into the page and presses Approve on
// a run waiting for her: the page signs the decision in the browser, the
// reporter relays it, the deployer verifies her signature and deploys —
// deploy.started, then SUCCESS. Her Reject on another run ends it
// REJECTED. Vera, a viewer, gets no buttons and the server refuses her
// approval. Alice, a requester, cancels a waiting run (after saying no
// once to the confirmation) and rolls back a deploying one, each after
// confirming; an unsigned rollback request published with the reporter's
// seed is not acted on. Screenshots go to $RUNBOOK_ARTIFACTS_DIR.
func TestDashboardActs(t *testing.T) {
	chrome := chromium(t)
	p := startPipeline(t, func(o *allinone.Options) { o.HTTPListen = "127.0.0.1:0" })
	base := "http://" + p.srv.HTTPAddr()
	people := map[string]auth.Created{}
	for name, role := range map[string]trust.Role{"tina": trust.Approver, "vera": trust.Viewer, "alice": trust.Requester} {
		c, err := p.srv.Identities().Create(name, role, "")
		if err != nil {
			t.Fatal(err)
		}
		people[name] = c
	}
	approveRun := p.submit(t, []byte(signedPlan))
	rejectRun := p.submit(t, []byte(signedPlan))
	cancelRun := p.submit(t, []byte(signedPlan))
	for _, run := range []string{approveRun, rejectRun, cancelRun} {
		p.waitEvent(t, run, "run.waiting", 30*time.Second, nil)
	}

	ctx := browser(t, chrome)
	do := func(what string, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			// What the Act card said, to see why.
			dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
			defer dcancel()
			card, _ := chromedp.Run(dctx, chromedp.Evaluate[string](`document.querySelector("#whoami")?.parentElement?.outerHTML ?? document.querySelector("#view")?.innerText ?? ""`))
			t.Fatalf("%s: %v\nthe page's Act card: %s", what, err, card)
		}
	}
	text := func(sel string) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		s, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	shots := artifacts(t)
	screenshot := func(name string) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		path := filepath.Join(shots, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s", path)
	}
	runPage := func(run, status string) string {
		return fmt.Sprintf(`#run[data-run-id=%q][data-status=%q]`, run, status)
	}
	// signIn opens /login with name's token (the cookie; the page loaded
	// after it reads who that is), then run's page.
	signIn := func(name, run, status string) {
		t.Helper()
		do("sign in as "+name, 30*time.Second,
			chromedp.Navigate(base+"/login?token="+people[name].Token),
			chromedp.WaitVisible(chromedp.CSS(`#live[data-state="open"]`)),
			chromedp.Navigate(base+"/#/runs/"+run),
			chromedp.WaitVisible(chromedp.CSS(runPage(run, status))),
			chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#whoami[data-identity=%q]`, name))))
	}
	// loadKey puts name's key file into the page's file input, as a person
	// choosing it would. A live re-render can move the input between
	// chromedp's query and its upload (a DevTools node id goes stale when
	// its node moves), so the upload is repeated until the page says it
	// read the key, within a deadline.
	loadKey := func(name string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err := chromedp.Do(sctx,
				chromedp.SetUploadFiles(chromedp.CSS("#key-file"), []string{people[name].SeedPath}),
				chromedp.WaitVisible(chromedp.CSS(`#act-result[data-action="key"]:not([data-outcome="pending"])`)))
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("load %s's key: %v", name, err)
			}
		}
		if got := text("#key-state"); !strings.Contains(got, "loaded (in this page only)") {
			t.Fatalf("%s's key not loaded: %q", name, text("#act-result"))
		}
	}

	// Tina approves: the deploy starts and the run ends SUCCESS.
	signIn("tina", approveRun, "AWAITING_APPROVAL")
	if got := text("#waiting-for"); got != "technical_approval" {
		t.Errorf("waiting for %q", got)
	}
	loadKey("tina")
	screenshot("dashboard-act-awaiting-approval.png")
	do("approve", 10*time.Second, chromedp.Click(chromedp.CSS("#approve")), chromedp.WaitVisible(chromedp.CSS(`#act-result[data-action="approve"]:not([data-outcome="pending"])`)))
	if got := text("#act-result"); !strings.Contains(got, "tina approved "+approveRun+" as technical_approval") {
		t.Errorf("after Approve the page says %q", got)
	}
	p.waitEvent(t, approveRun, "deploy.started", 30*time.Second, nil)
	if rr := p.report(t, approveRun, 60*time.Second); rr.Status != "SUCCESS" {
		t.Fatalf("the approved run ended %s", rr.Status)
	}
	do("the page follows the run to SUCCESS", 30*time.Second, chromedp.WaitVisible(chromedp.CSS(runPage(approveRun, "SUCCESS"))))
	h := p.history(t, approveRun)
	if g, d := index(h, "approval.granted"), index(h, "deploy.started"); g < 0 || d < g {
		t.Fatalf("approval.granted at %d, deploy.started at %d: %v", g, d, types(h))
	}
	if sig := h[index(h, "approval.granted")].GetSignature(); sig.GetKey() != people["tina"].Identity.PublicKey {
		t.Errorf("the approval is signed by %q, not tina's key", sig.GetKey())
	}
	if c := countType(h, "approval.refused"); c != 0 {
		t.Errorf("the deployer refused %d decisions: %v", c, types(h))
	}
	screenshot("dashboard-act-approved.png")

	// Tina rejects another run: REJECTED, never deployed.
	do("reject page", 20*time.Second, chromedp.Navigate(base+"/#/runs/"+rejectRun), chromedp.WaitVisible(chromedp.CSS(runPage(rejectRun, "AWAITING_APPROVAL"))))
	do("reject", 10*time.Second,
		chromedp.SendKeys(chromedp.CSS("#reject-reason"), "not during the sale"),
		chromedp.Click(chromedp.CSS("#reject")),
		chromedp.WaitVisible(chromedp.CSS(runPage(rejectRun, "REJECTED"))))
	if rr := p.report(t, rejectRun, 30*time.Second); rr.Status != "REJECTED" || !strings.Contains(rr.QcSummary, "not during the sale") {
		t.Fatalf("rejected run ended %s:\n%s", rr.Status, rr.QcSummary)
	}
	if c := countType(p.history(t, rejectRun), "deploy.started"); c != 0 {
		t.Fatal("a rejected run deployed")
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	bar, err := chromedp.Run(sctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#phases span")].map(s => s.dataset.state)`))
	cancel()
	if err != nil || strings.Join(bar, " ") != "done stopped skipped skipped done" {
		t.Errorf("phase bar of the rejected run: %v %v", bar, err)
	}

	// Vera, a viewer: no buttons, and the server refuses her.
	signIn("vera", cancelRun, "AWAITING_APPROVAL")
	do("no buttons for a viewer", 5*time.Second, chromedp.WaitNotPresent(chromedp.CSS("#approve")), chromedp.WaitNotPresent(chromedp.CSS("#cancel")))
	if got := text("#whoami"); !strings.Contains(got, "vera is a viewer") {
		t.Errorf("viewer's Act card: %q", got)
	}
	sctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	refusal, err := chromedp.Run(sctx, chromedp.Evaluate[string](fmt.Sprintf(`fetch("/api/v1/runs/%s/decisions/prepare", {method: "POST",
	  headers: {"Content-Type": "application/json"}, body: JSON.stringify({action: "approve", role: "technical_approval"})})
	  .then(r => r.json().then(b => r.status + " " + b.error))`, cancelRun), chromedp.EvalAwaitPromise))
	cancel()
	if err != nil || !strings.HasPrefix(refusal, "403 vera is a viewer: a viewer may not approve a run") {
		t.Errorf("a viewer's approval: %q %v", refusal, err)
	}

	// Alice cancels the waiting run: no the first time, yes the second.
	signIn("alice", cancelRun, "AWAITING_APPROVAL")
	loadKey("alice")
	do("cancel, then no", 10*time.Second,
		chromedp.SendKeys(chromedp.CSS("#stop-reason"), "window moved"),
		chromedp.Click(chromedp.CSS("#cancel")),
		chromedp.WaitVisible(chromedp.CSS("dialog#confirm #confirm-no")))
	screenshot("dashboard-act-confirm-cancel.png")
	do("say no", 10*time.Second, chromedp.Click(chromedp.CSS("#confirm-no")), chromedp.WaitNotPresent(chromedp.CSS("dialog#confirm")))
	if got := text("#act-result"); got != "Not cancelled." {
		t.Errorf("after No: %q", got)
	}
	if c := countType(p.history(t, cancelRun), "run.cancelled"); c != 0 {
		t.Fatal("cancelled without confirmation")
	}
	do("cancel, then yes", 20*time.Second,
		chromedp.Click(chromedp.CSS("#cancel")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-yes")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		chromedp.WaitVisible(chromedp.CSS(runPage(cancelRun, "CANCELLED"))))
	if rr := p.report(t, cancelRun, 30*time.Second); rr.Status != "CANCELLED" || !strings.Contains(rr.QcSummary, "window moved") {
		t.Fatalf("cancelled run ended %s:\n%s", rr.Status, rr.QcSummary)
	}

	// Alice rolls back a run whose deploy step is running.
	slow := p.submit(t, []byte(slowPlan))
	p.waitFor(t, slow, "deploy.step.started")
	// The reporter may relay a rollback request only with a person's
	// signature: an unsigned one published with its seed (stolen), even
	// claiming to be the monitor's, is dead-lettered by the deployer.
	rep, err := auth.Open(p.srv.Identities().SeedPath("reporter"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := eventbus.Connect(p.srv.NATSURL(), "stolen-reporter", rep.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	bctx, bcancel := context.WithTimeout(context.Background(), 10*time.Second)
	stolen, err := eventbus.NewBus(bctx, nc, eventbus.Options{Source: "reporter/stolen", Signer: rep.KP})
	bcancel()
	if err != nil {
		t.Fatal(err)
	}
	forged := eventbus.New(slow, &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{RequestedBy: "monitor", Reason: "forged"}}, "forged")
	if _, err := stolen.Publish(context.Background(), forged); err != nil {
		t.Fatalf("the reporter may publish rollback.requested (as a relay): %v", err)
	}
	p.waitEvent(t, slow, "event.dead_lettered", 30*time.Second, func(e *runbookv1.Event) bool {
		return strings.Contains(e.GetEventDeadLettered().GetReason(), "must be signed")
	})
	if c := countType(p.history(t, slow), "rollback.started"); c != 0 {
		t.Fatal("an unsigned rollback request relayed by the reporter's key was acted on")
	}

	do("rollback page", 20*time.Second, chromedp.Navigate(base+"/#/runs/"+slow), chromedp.WaitVisible(chromedp.CSS(runPage(slow, "DEPLOYING"))))
	do("roll back", 30*time.Second,
		chromedp.SendKeys(chromedp.CSS("#stop-reason"), "customers report errors"),
		chromedp.Click(chromedp.CSS("#rollback")),
		chromedp.WaitVisible(chromedp.CSS("#confirm-yes")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		chromedp.WaitVisible(chromedp.CSS(runPage(slow, "ROLLED_BACK"))))
	if rr := p.report(t, slow, 30*time.Second); rr.Status != "ROLLED_BACK" || !strings.Contains(rr.QcSummary, "customers report errors") {
		t.Fatalf("rolled-back run ended %s:\n%s", rr.Status, rr.QcSummary)
	}
	screenshot("dashboard-act-rolled-back.png")
}
