package checks

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

// running reports whether pid is a live process (not gone, not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// A command check that leaves a child in the background (sh -c 'sleep 30
// & wait') is killed as a whole process group at its timeout: the check
// fails saying so, and the child is gone too.
func TestCommandCheckTimeoutKillsTheGroup(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skipf("no /proc: %v", err)
	}
	pidFile := filepath.Join(t.TempDir(), "child")
	r := &Runner{}
	c := plan.Check{Name: "slow", Timeout: plan.Duration{Duration: 300 * time.Millisecond},
		Command: &plan.Command{Argv: []string{"sh", "-c", "sleep 30 & echo $! > " + pidFile + "; wait"}}}
	t0 := time.Now()
	res := r.Run(context.Background(), 0, c)
	if res.Status != bad || !strings.Contains(res.Message, "timed out after 300ms") {
		t.Fatalf("result %+v: want a failure at the timeout", res)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Fatalf("the check took %s: the background child held it", took)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("background child %d of the timed-out check still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A secret the plan names (here an http step's header variable, whose name
// does not look secret), printed by a command check as is and in
// base64, is redacted from the result as a deploy step's output is
// ([REDACTED:NAME]); the scrub of values alone misses the base64 form.
func TestCommandCheckRedactsLikeDeploySteps(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-Api-Token-42"
	b64 := base64.StdEncoding.EncodeToString([]byte(secret))
	p := &plan.Plan{Preflight: plan.Preflight{Checks: []plan.Check{{Name: "leaky", Command: &plan.Command{
		Argv: []string{"sh", "-c", `echo "token ${UPSTREAM_AUTH} as b64 ` + b64 + `"; exit 1`},
	}}}}}
	p.Deploy.Steps = []plan.Step{{Name: "call", HTTP: &plan.HTTPStep{URL: "https://api.example.com", HeadersEnv: map[string]string{"Authorization": "UPSTREAM_AUTH"}}}}
	env := func(n string) (string, bool) { return secret, n == "UPSTREAM_AUTH" }
	if names := p.SecretEnv(); len(names) != 1 || names[0] != "UPSTREAM_AUTH" {
		t.Fatalf("premise: the plan names UPSTREAM_AUTH as a secret: %q", names)
	}
	r := (&Runner{Env: env, BaseEnv: []string{"PATH=" + os.Getenv("PATH"), "UPSTREAM_AUTH=" + secret}}).ForPlan(p)
	res := r.RunAll(context.Background(), p.Preflight.Checks, r.SecretValues(p)...)[0]
	if res.Status != bad || strings.Contains(res.Message, secret) || strings.Contains(res.Message, b64) ||
		!strings.Contains(res.Message, "token [REDACTED:UPSTREAM_AUTH] as b64 [REDACTED:UPSTREAM_AUTH]") {
		t.Fatalf("message %q: want the token redacted in both forms", res.Message)
	}
}
