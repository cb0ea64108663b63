package allinone_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
)

// recipe is the shell block of docs/nats-pub.md that follows the line
// starting with marker: the command text exactly as a reader copies it.
func recipe(t *testing.T, marker string) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "nats-pub.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "\n"+marker)
	if !ok {
		t.Fatalf("docs/nats-pub.md has no line %q", marker)
	}
	_, after, ok = strings.Cut(after, "\n```sh\n")
	block, _, closed := strings.Cut(after, "\n```\n")
	if !ok || !closed {
		t.Fatalf("docs/nats-pub.md: no ```sh block after %q", marker)
	}
	return block
}

// The nats pub recipe of docs/nats-pub.md, run as printed with the stock
// nats CLI against runbook serve --insecure-no-auth (as the doc says),
// starts a run that ends SUCCESS, with the time the recipe sent.
func TestNATSPubRecipeStartsARun(t *testing.T) {
	bin := natsCLI(t)
	if _, err := exec.LookPath("jq"); err != nil {
		missing(t, "jq is not installed (apt-get install jq): the recipe of docs/nats-pub.md needs it")
	}
	script := recipe(t, "<!-- recipe: change.requested")
	p := startPipeline(t, func(o *allinone.Options) { o.InsecureNoAuth = true })

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "plan.yaml"), []byte(trivialPlan), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-e", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"RUNBOOK_NATS_URL="+p.srv.NATSURL(), "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	sent := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the recipe failed: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(?m)^run (\S+)$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("the recipe printed no run id:\n%s", out)
	}
	run := string(m[1])
	if rr := p.report(t, run, 60*time.Second); rr.Status != "SUCCESS" {
		t.Fatalf("run %s ended %s: %s", run, rr.Status, rr.GetQcSummary())
	}
	cr, err := p.bus.LastEvent(context.Background(), run, "change.requested")
	if err != nil || cr == nil {
		t.Fatalf("change.requested of %s: %v", run, err)
	}
	if at := cr.Event.GetTime().AsTime(); at.Before(sent.Add(-2*time.Second)) || at.After(time.Now()) {
		t.Errorf("change.requested time %s, sent at %s", at, sent)
	}
	if got := cr.Event.GetChangeRequested().GetPlanYaml(); got != trivialPlan {
		t.Errorf("the plan arrived as %q", got)
	}
}
