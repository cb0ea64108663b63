package allinone_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus/natstest"
	"github.com/kis-core/runbook/services/reporter/report"
)

// getJSON GETs url into v; false unless it answered 200 with JSON.
func getJSON(t *testing.T, url string, v any) bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Logf("GET %s: %v", url, err)
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
}

// revertablePlan changes one file, backed up by pre-flight; its rollback
// restores it from the run's backup, and takes a backup of its own first.
func revertablePlan(dir string) string {
	target, extra := filepath.Join(dir, "app.conf"), filepath.Join(dir, "extra.txt")
	return `change_request: {id: CR-RV, title: "config v2", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
preflight:
  backup:
    dir: "` + filepath.Join(dir, "backups") + `"
    steps: [{files: ["` + target + `"]}]
rollback_plan:
  rollback_steps:
    - "tell the on-call"
    - {name: keep what v2 wrote, backup: {steps: [{files: ["` + extra + `"]}]}}
    - {name: restore config, restore: {file: app.conf, to: "` + target + `"}}
deploy:
  steps:
    - {name: write v2, command: {argv: [sh, -c, 'echo v2 > "$0" && echo written > "$1"', "` + target + `", "` + extra + `"]}}
`
}

// runbook revert: a run that ended SUCCESS is undone by a new run (its own
// change id, REVERT-CR-RV) that runs its rollback steps against its backup:
// the file comes back from the ORIGINAL run's backup (the revert's own
// backup step goes into a directory of its own), the new run ends SUCCESS,
// and both reports link to each other. A run that did not end SUCCESS, a
// run already reverted and a revert itself are refused with the reason.
func TestRevertAfterSuccess(t *testing.T) {
	p := startPipeline(t, func(o *allinone.Options) { o.HTTPListen = "127.0.0.1:0" })
	dir := t.TempDir()
	target := filepath.Join(dir, "app.conf")
	if err := os.WriteFile(target, []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Not SUCCESS: refused, nothing submitted.
	failed := p.submit(t, []byte(nothingUndonePlan))
	if rr := p.report(t, failed, 30*time.Second); rr.Status != "FAILED" {
		t.Fatalf("the failing run ended %s", rr.Status)
	}
	code, _, stderr := p.runCLI(t, "revert", failed, "--reason", "undo it")
	if code != 6 || !strings.Contains(stderr, "run "+failed+" ended FAILED (") || !strings.Contains(stderr, "only a change that ended SUCCESS is reverted") {
		t.Errorf("revert of a FAILED run: exit %d, %s", code, stderr)
	}

	orig := p.submit(t, []byte(revertablePlan(dir)))
	if rr := p.report(t, orig, 30*time.Second); rr.Status != "SUCCESS" {
		t.Fatalf("the change ended %s:\n%s", rr.Status, rr.QcSummary)
	}
	if b, _ := os.ReadFile(target); string(b) != "v2\n" {
		t.Fatalf("after the change app.conf = %q", b)
	}
	origBackup := p.waitEvent(t, orig, "backup.done", time.Second, nil).GetBackupDone()

	// --dry-run prints the revert plan and submits nothing.
	code, stdout, stderr := p.runCLI(t, "revert", orig, "--reason", "customers see v2", "--dry-run")
	if code != 0 || !strings.Contains(stdout, "id: REVERT-CR-RV") || !strings.Contains(stdout, "reverts:\n  run: "+orig) {
		t.Fatalf("dry run: exit %d\n%s%s", code, stdout, stderr)
	}

	code, stdout, stderr = p.runCLI(t, "revert", orig, "--reason", "customers see v2")
	m := regexp.MustCompile(`as run (\S+):`).FindStringSubmatch(stdout)
	if code != 0 || m == nil {
		t.Fatalf("revert: exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "no executable step: a failure ends FAILED with nothing undone") {
		t.Errorf("revert does not say that its own rollback is manual: %s", stderr)
	}
	rev := m[1]
	rr := p.report(t, rev, 30*time.Second)
	if rr.Status != "SUCCESS" {
		t.Fatalf("the revert ended %s:\n%s\n%v", rr.Status, rr.QcSummary, types(p.history(t, rev)))
	}

	// The file is back, restored from the original run's backup.
	if b, _ := os.ReadFile(target); string(b) != "v1\n" {
		t.Errorf("after the revert app.conf = %q, want v1", b)
	}
	evs := p.history(t, rev)
	var restored string
	for _, e := range evs {
		if s := e.GetDeployStepSucceeded(); s != nil && s.GetKind() == "restore" {
			restored = s.GetOutputTail()
		}
		if c := e.GetChangeRequested(); c != nil && !strings.Contains(c.GetPlanYaml(), "reverts:\n  run: "+orig) {
			t.Errorf("the revert's plan does not name %s:\n%s", orig, c.GetPlanYaml())
		}
	}
	if !strings.Contains(restored, "verified) from "+origBackup.GetDir()+" to "+target) {
		t.Errorf("restore output %q: not from the original's backup %s", restored, origBackup.GetDir())
	}
	// The revert's own backup step went into its own directory; the
	// original's backup is as it was.
	own := p.waitEvent(t, rev, "backup.done", time.Second, nil).GetBackupDone()
	if own.GetDir() == origBackup.GetDir() || !strings.HasPrefix(filepath.Base(own.GetDir()), rev+"-") || strings.Join(own.GetFiles(), ",") != "extra.txt" {
		t.Errorf("the revert's backup: %+v (the original's: %s)", own, origBackup.GetDir())
	}
	if md, err := os.ReadFile(filepath.Join(origBackup.GetDir(), "backup_metadata.json")); err != nil || strings.Contains(string(md), "extra.txt") {
		t.Errorf("the original's backup changed: %s %v", md, err)
	}
	var pf bool
	for _, c := range p.waitEvent(t, rev, "preflight.passed", time.Second, nil).GetPreflightPassed().GetChecks() {
		pf = pf || (c.GetKind() == "reverts" && strings.Contains(c.GetMessage(), "run "+orig+" ended SUCCESS; restore steps read its backup "+origBackup.GetDir()))
	}
	if !pf {
		t.Errorf("pre-flight did not check the reverted run: %v", evs)
	}

	// Both reports link to each other.
	var rj report.Report
	if err := json.Unmarshal([]byte(rr.ReportJson), &rj); err != nil {
		t.Fatal(err)
	}
	if rj.Reverts == nil || rj.Reverts.Run != orig || rj.Reverts.ChangeID != "CR-RV" || rj.Reverts.Reason != "customers see v2" || rj.Change.ID != "REVERT-CR-RV" {
		t.Errorf("the revert's report: reverts %+v, change %+v", rj.Reverts, rj.Change)
	}
	if code, out, errOut := p.runCLI(t, "report", rev); code != 0 || !strings.Contains(out, "\nReverts: run "+orig+" (CR-RV), requested by admin — customers see v2") {
		t.Errorf("runbook report %s: exit %d\n%s%s", rev, code, out, errOut)
	}
	p.waitEvent(t, orig, "revert.requested", time.Second, nil)
	if code, out, errOut := p.runCLI(t, "report", orig); code != 0 || !strings.Contains(out, "\nReverted by: run "+rev+" (REVERT-CR-RV), requested by admin — customers see v2 (runbook report "+rev+")") {
		t.Errorf("runbook report %s: exit %d\n%s%s", orig, code, out, errOut)
	}
	if code, out, _ := p.runCLI(t, "report", orig, "--format", "markdown"); code != 0 || !strings.Contains(out, "**Reverted by** run "+rev) {
		t.Errorf("markdown report of %s:\n%s", orig, out)
	}
	// The read API's run pages too.
	natstest.Eventually(t, 10*time.Second, "reverted_by and reverts in the read API", func() bool {
		var o, r struct {
			Report report.Report `json:"report"`
		}
		return getJSON(t, "http://"+p.srv.HTTPAddr()+"/api/v1/runs/"+orig, &o) && getJSON(t, "http://"+p.srv.HTTPAddr()+"/api/v1/runs/"+rev, &r) &&
			len(o.Report.RevertedBy) == 1 && o.Report.RevertedBy[0].Run == rev && r.Report.Reverts != nil && r.Report.Reverts.Run == orig
	})

	// Once is enough; and a revert is not reverted.
	if code, _, stderr := p.runCLI(t, "revert", orig, "--reason", "again"); code != 6 || !strings.Contains(stderr, "run "+orig+" was already reverted by run "+rev+" (SUCCESS)") {
		t.Errorf("second revert: exit %d %s", code, stderr)
	}
	if code, _, stderr := p.runCLI(t, "revert", rev, "--reason", "undo the undo"); code != 1 || !strings.Contains(stderr, "it is itself the revert of run "+orig) {
		t.Errorf("revert of a revert: exit %d %s", code, stderr)
	}
}

// Reverts of one run submitted at the same moment (past the CLI's check,
// which each passes alone): pre-flight lets exactly one of them deploy —
// the revert.requested it records on the reverted run is stored only over
// the one its check saw — and refuses the others, naming the one that won.
func TestConcurrentRevertsOnlyOneDeploys(t *testing.T) {
	p := startPipeline(t, nil)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.conf"), []byte("v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	orig := p.submit(t, []byte(revertablePlan(dir)))
	if rr := p.report(t, orig, 30*time.Second); rr.Status != "SUCCESS" {
		t.Fatalf("the change ended %s:\n%s", rr.Status, rr.QcSummary)
	}
	var origPlan string
	for _, e := range p.history(t, orig) {
		if c := e.GetChangeRequested(); c != nil {
			origPlan = c.GetPlanYaml()
		}
	}
	data, err := plan.Revert([]byte(origPlan), plan.RevertOf{Run: orig, Reason: "customers see v2", Requester: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 4
	revs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { revs[i] = p.submit(t, data) })
	}
	wg.Wait()
	var won []string
	for _, rev := range revs {
		rr := p.report(t, rev, 60*time.Second)
		h := p.history(t, rev)
		if rr.Status == "SUCCESS" {
			won = append(won, rev)
			continue
		}
		if countType(h, "deploy.started") != 0 {
			t.Errorf("revert %s ended %s after its deploy started: %v", rev, rr.Status, types(h))
		}
	}
	if len(won) != 1 {
		t.Fatalf("%d of %d concurrent reverts deployed (%v); want exactly one", len(won), n, won)
	}
	for _, rev := range revs {
		if rev == won[0] {
			continue
		}
		var reason string
		for _, e := range p.history(t, rev) {
			if f := e.GetPreflightFailed(); f != nil {
				reason = f.GetReason()
			}
		}
		if !strings.Contains(reason, "run "+orig+" is already being reverted by run "+won[0]) && !strings.Contains(reason, "run "+orig+" was already reverted by run "+won[0]) {
			t.Errorf("revert %s: pre-flight said %q; want it to name %s", rev, reason, won[0])
		}
	}
	st := 0
	for _, e := range p.history(t, orig) {
		if r := e.GetRevertRequested(); r != nil && r.GetByRun() != won[0] {
			t.Errorf("run %s records a revert by %s, which did not pass pre-flight", orig, r.GetByRun())
		} else if r != nil {
			st++
		}
	}
	if st != 1 {
		t.Errorf("run %s records the winning revert %d times", orig, st)
	}
}
