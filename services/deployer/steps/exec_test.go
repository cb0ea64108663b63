package steps_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/services/deployer/steps"
)

// groupAlive lists the live (not zombie) processes of process group pgid,
// read from /proc.
func groupAlive(t *testing.T, pgid int) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var alive []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces, so cut at the last ')'.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			alive = append(alive, pid)
		}
	}
	return alive
}

// Cancelling a running `sleep 600` (argv and shell) kills its whole
// process group within a second.
func TestCancelKillsProcessGroup(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]*plan.Command{
		"argv":  {Argv: []string{"sleep", "600"}},
		"shell": {Shell: "sleep 600; echo done"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pids := make(chan int, 1)
			x := &steps.Executor{BaseEnv: []string{"PATH=" + os.Getenv("PATH")}, OnStart: func(pid int) { pids <- pid }}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan steps.Result, 1)
			go func() { done <- x.Run(ctx, plan.Step{Command: c}, nil) }()
			pgid := <-pids
			// Wait until the group runs sleep (for shell: sh has forked it).
			deadline := time.Now().Add(5 * time.Second)
			for name == "shell" && len(groupAlive(t, pgid)) < 2 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := len(groupAlive(t, pgid)); n == 0 || (name == "shell" && n < 2) {
				t.Fatalf("process group %d has %d live processes before cancel", pgid, n)
			}
			t0 := time.Now()
			cancel()
			for len(groupAlive(t, pgid)) > 0 {
				if time.Since(t0) > time.Second {
					t.Fatalf("process group %d still alive 1s after cancel: %v", pgid, groupAlive(t, pgid))
				}
				time.Sleep(10 * time.Millisecond)
			}
			select {
			case res := <-done:
				if res.Err == nil || !errors.Is(res.Err, context.Canceled) {
					t.Errorf("cancelled step: err %v, want context.Canceled", res.Err)
				}
				if strings.Contains(res.OutputTail, "done") {
					t.Errorf("the script went on after cancel: %q", res.OutputTail)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
		})
	}
}

// A step's timeout kills the group as well.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	pids := make(chan int, 1)
	x := &steps.Executor{BaseEnv: []string{"PATH=" + os.Getenv("PATH")}, OnStart: func(pid int) { pids <- pid }}
	t0 := time.Now()
	res := x.Run(context.Background(), plan.Step{Timeout: plan.Duration{Duration: 200 * time.Millisecond}, Command: &plan.Command{Shell: "sleep 600 & sleep 600; echo done"}}, nil)
	pgid := <-pids
	if !errors.Is(res.Err, context.DeadlineExceeded) || time.Since(t0) > 3*time.Second {
		t.Fatalf("timed-out step: err %v after %s", res.Err, time.Since(t0))
	}
	for len(groupAlive(t, pgid)) > 0 {
		if time.Since(t0) > 3*time.Second {
			t.Fatalf("process group %d alive after the timeout: %v", pgid, groupAlive(t, pgid))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Plan values and run data reach a command as literal argv or environment,
// never as shell code.
func TestInjectionStaysLiteral(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	marker := filepath.Join(dir, "x")
	nasty := []string{
		"$(touch " + marker + ")",
		"`touch " + marker + "`",
		"a; touch " + marker,
		"line1\ntouch " + marker,
		"-rf",
		"| touch " + marker + " &&",
	}
	x := &steps.Executor{BaseEnv: []string{"PATH=" + os.Getenv("PATH")}}
	ctx := context.Background()
	for _, v := range nasty {
		// A plan value in argv.
		res := x.Run(ctx, plan.Step{Command: &plan.Command{Argv: []string{"printf", `%s\n`, v}}}, nil)
		if res.Err != nil || strings.TrimSuffix(res.OutputTail, "\n") != v {
			t.Errorf("argv %q: output %q err %v, want the literal text", v, res.OutputTail, res.Err)
		}
		// Run data in RUNBOOK_* variables, used by argv and by a plan's shell script.
		env := map[string]string{"RUNBOOK_STEP_NAME": v, "RUNBOOK_RUN_ID": v}
		res = x.Run(ctx, plan.Step{Command: &plan.Command{Argv: []string{"sh", "-c", `printf '%s\n' "$RUNBOOK_STEP_NAME"`}}}, env)
		if res.Err != nil || strings.TrimSuffix(res.OutputTail, "\n") != v {
			t.Errorf("run data %q via argv: output %q err %v", v, res.OutputTail, res.Err)
		}
		res = x.Run(ctx, plan.Step{Command: &plan.Command{Shell: `set -e; printf '%s\n' "$RUNBOOK_RUN_ID"`}}, env)
		if res.Err != nil || strings.TrimSuffix(res.OutputTail, "\n") != v {
			t.Errorf("run data %q via shell: output %q err %v", v, res.OutputTail, res.Err)
		}
		// A plan's env value.
		res = x.Run(ctx, plan.Step{Command: &plan.Command{Argv: []string{"sh", "-c", `printf '%s\n' "$VALUE"`}, Env: map[string]string{"VALUE": v}}}, nil)
		if res.Err != nil || strings.TrimSuffix(res.OutputTail, "\n") != v {
			t.Errorf("env %q: output %q err %v", v, res.OutputTail, res.Err)
		}
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s exists: a value ran as shell code", marker)
	}
}

// Every attempt's run data is in the step's environment, with the
// idempotency key.
func TestRunEnvReachesShell(t *testing.T) {
	t.Parallel()
	x := &steps.Executor{BaseEnv: []string{"PATH=" + os.Getenv("PATH")}}
	res := x.Run(context.Background(), plan.Step{Command: &plan.Command{Shell: `printf %s "$RUNBOOK_IDEMPOTENCY_KEY"`}},
		map[string]string{"RUNBOOK_IDEMPOTENCY_KEY": "run-1/deploy/0/2"})
	if res.Err != nil || res.OutputTail != "run-1/deploy/0/2" {
		t.Errorf("output %q err %v", res.OutputTail, res.Err)
	}
}

// A secret a step prints (plain, base64, inside JSON) never appears in the
// step's result.
func TestSecretsRedacted(t *testing.T) {
	t.Parallel()
	const secret = `tok-"9f8e7d6c5b4a"-<x>`
	b64 := base64.StdEncoding.EncodeToString([]byte(secret))
	jsonText, _ := json.Marshal(map[string]string{"token": secret})
	forms := []string{secret, b64, base64.URLEncoding.EncodeToString([]byte(secret)), string(jsonText[10 : len(jsonText)-2])}
	leaked := func(t *testing.T, what string, res steps.Result) {
		t.Helper()
		text := res.OutputTail
		if res.Err != nil {
			text += "\n" + res.Err.Error()
		}
		for _, f := range forms {
			if strings.Contains(text, f) {
				t.Errorf("%s: secret form %q in the result: %q", what, f, text)
			}
		}
		if !strings.Contains(text, "[REDACTED:") {
			t.Errorf("%s: nothing redacted in %q", what, text)
		}
	}

	// A command step: the secret from the plan's env entry (secret-looking name)
	// and from the inherited environment.
	x := &steps.Executor{BaseEnv: []string{"PATH=" + os.Getenv("PATH"), "DEPLOY_TOKEN=" + secret}}
	script := `printf '%s\n' "$API_TOKEN"; printf '%s' "$API_TOKEN" | base64; printf '%s' "$DEPLOY_TOKEN" | base64 | tr '+/' '-_';` +
		` printf '{"token":"%s"}\n' "$(printf '%s' "$DEPLOY_TOKEN" | sed 's/"/\\"/g')"; echo "failing with $API_TOKEN" >&2; exit 3`
	res := x.Run(context.Background(), plan.Step{Command: &plan.Command{Shell: script, Env: map[string]string{"API_TOKEN": secret}}}, nil)
	if res.ExitCode != 3 {
		t.Fatalf("exit %d, output %q", res.ExitCode, res.OutputTail)
	}
	leaked(t, "command", res)

	// An http step: the header's value, echoed back plain, base64 and in JSON.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := r.Header.Get("Authorization")
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(map[string]string{"got": a, "b64": base64.StdEncoding.EncodeToString([]byte(a))})
		_, _ = w.Write([]byte(a))
	}))
	defer srv.Close()
	env := map[string]string{"API_TOKEN": secret}
	x = &steps.Executor{Env: func(n string) (string, bool) { v, ok := env[n]; return v, ok }}
	res = x.Run(context.Background(), plan.Step{HTTP: &plan.HTTPStep{URL: srv.URL, HeadersEnv: map[string]string{"Authorization": "API_TOKEN"}}}, nil)
	if res.Err == nil {
		t.Fatal("a 500 passed")
	}
	leaked(t, "http", res)
}

// wait until: polls until the URL answers the expected status.
func TestWaitUntil(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	x := &steps.Executor{}
	until := &plan.WaitUntil{URL: srv.URL, ExpectStatus: 204, Interval: plan.Duration{Duration: 20 * time.Millisecond}}
	res := x.Run(context.Background(), plan.Step{Wait: &plan.WaitStep{Until: until}}, nil)
	if res.Err != nil || n.Load() != 3 || !strings.Contains(res.OutputTail, "after 3 check(s)") {
		t.Errorf("wait until: %d requests, %q, %v", n.Load(), res.OutputTail, res.Err)
	}
	until = &plan.WaitUntil{URL: srv.URL, ExpectStatus: 200, Interval: plan.Duration{Duration: 20 * time.Millisecond}, Timeout: plan.Duration{Duration: 150 * time.Millisecond}}
	res = x.Run(context.Background(), plan.Step{Wait: &plan.WaitStep{Until: until}}, nil)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "not ready") || !strings.Contains(res.Err.Error(), "HTTP 204 (expected 200)") {
		t.Errorf("wait until that never passes: %v", res.Err)
	}
}
