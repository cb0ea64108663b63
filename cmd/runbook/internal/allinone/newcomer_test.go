package allinone_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus/natstest"
)

// What a newcomer does from a fresh clone (README, "Your first plan"):
// runbook init, point the plan at their service (here the demo estimator)
// with their deploy and rollback commands and a short window for a first
// try, runbook validate, runbook submit --watch → SUCCESS.
func TestNewcomerInitValidateSubmit(t *testing.T) {
	tg := startTarget(t)
	p := startPipeline(t, nil)
	me, err := p.srv.Identities().Create("newcomer", trust.Requester, "")
	if err != nil {
		t.Fatal(err)
	}
	runbook := func(args ...string) (int, string) {
		t.Helper()
		var out bytes.Buffer
		code := cli.Execute(context.Background(), args, &out, &out)
		return code, out.String()
	}

	file := filepath.Join(t.TempDir(), "plan.yaml")
	if code, out := runbook("init", "--name", "estimator", "--url", tg.url, "--health", "/api/v1/health", "-f", file); code != 0 {
		t.Fatalf("runbook init: exit %d\n%s", code, out)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	deploy := "cp " + filepath.Join(tg.stateDir, "releases", "v2.4.0.json") + " " + filepath.Join(tg.stateDir, "current-release.json")
	s := string(b)
	for _, edit := range [][2]string{
		{"echo 'deploy estimator: replace this with your deploy command'", deploy},
		{"echo 'roll back estimator: replace this with your rollback command'", deploy},
		{"window: 5m ", "window: 6s "},
		{"interval: 15s ", "interval: 2s "},
		{"initial_delay: 5s", "initial_delay: 0s"},
	} {
		if !strings.Contains(s, edit[0]) {
			t.Fatalf("the plan runbook init writes has no %q:\n%s", edit[0], s)
		}
		s = strings.Replace(s, edit[0], edit[1], 1)
	}
	if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}

	if code, out := runbook("validate", file); code != 0 || !strings.Contains(out, "is valid") {
		t.Fatalf("runbook validate: exit %d\n%s", code, out)
	}
	as := []string{"--nats-url", p.srv.NATSURL(), "--creds", me.SeedPath}
	natstest.Eventually(t, 10*time.Second, "the new identity accepted by the server", func() bool {
		code, _ := runbook(append([]string{"runs"}, as...)...)
		return code == 0
	})
	code, out := runbook(append([]string{"submit", "--watch", file}, as...)...)
	if code != 0 || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("runbook submit --watch: exit %d\n%s", code, out)
	}
	if got := tg.release(t); !strings.HasPrefix(got, "v2.4.0 ") {
		t.Errorf("the estimator serves %s after the deploy", got)
	}
}
