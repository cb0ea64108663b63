// Package steps executes deploy, rollback and finally steps and health
// checks. Commands run from argv, never through a shell; run data reaches
// them as RUNBOOK_* environment variables.
package steps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus/procio"
)

// BackupDirEnv is the variable that holds the run's own backup directory
// (from its backup.done) in runEnv, and so in every command's environment.
const BackupDirEnv = "RUNBOOK_BACKUP_DIR"

// Result of one attempt.
type Result struct {
	ExitCode   int
	OutputTail string
	Err        error
}

// Executor runs steps.
type Executor struct {
	HTTP *http.Client
	// Env looks up environment variables named by *_env fields.
	Env func(string) (string, bool)
	// BaseEnv is the environment every command starts from (default os.Environ()).
	BaseEnv []string
	// TailBytes is how much output is kept in the step event (default 2 KiB).
	TailBytes int
}

// Run runs one attempt of step s with the run's data in runEnv
// (RUNBOOK_RUN_ID, ...).
func (x *Executor) Run(ctx context.Context, s plan.Step, runEnv map[string]string) Result {
	ctx, cancel := context.WithTimeout(ctx, s.EffectiveTimeout())
	defer cancel()
	switch {
	case s.Command != nil:
		return x.command(ctx, s.Command, runEnv)
	case s.HTTP != nil:
		return x.http(ctx, s.HTTP)
	case s.Restore != nil:
		return restore(ctx, s.Restore, runEnv[BackupDirEnv])
	case s.Wait != nil:
		t := time.NewTimer(s.Wait.Duration.Duration)
		defer t.Stop()
		select {
		case <-t.C:
			return Result{}
		case <-ctx.Done():
			return Result{Err: fmt.Errorf("wait interrupted: %w", context.Cause(ctx))}
		}
	case s.Text != "":
		return Result{OutputTail: "MANUAL STEP (described in the plan, not executed by runbook): " + s.Text}
	}
	return Result{Err: errors.New("step has nothing to run")}
}

func (x *Executor) command(ctx context.Context, c *plan.Command, runEnv map[string]string) Result {
	if len(c.Argv) == 0 {
		return Result{Err: errors.New("command has no argv")}
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Dir = c.Dir
	env := x.BaseEnv
	if env == nil {
		env = os.Environ()
	}
	env = append([]string(nil), env...)
	for k, v := range c.Env {
		env = append(env, k+"="+v)
	}
	for k, v := range runEnv {
		env = append(env, k+"="+v)
	}
	cmd.Env = env
	out := procio.NewTailBuffer(x.tailBytes())
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	res := Result{OutputTail: out.String()}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			res.ExitCode = ee.ExitCode()
			if ctx.Err() != nil {
				res.Err = fmt.Errorf("%s: %w", strings.Join(c.Argv, " "), context.Cause(ctx))
			} else {
				res.Err = fmt.Errorf("%s exited %d", strings.Join(c.Argv, " "), res.ExitCode)
			}
		} else {
			res.ExitCode = -1
			res.Err = fmt.Errorf("%s: %w", strings.Join(c.Argv, " "), err)
		}
	}
	return res
}

func (x *Executor) tailBytes() int {
	if x.TailBytes > 0 {
		return x.TailBytes
	}
	return 2048
}

func (x *Executor) client() *http.Client {
	if x.HTTP != nil {
		return x.HTTP
	}
	return http.DefaultClient
}

func (x *Executor) http(ctx context.Context, h *plan.HTTPStep) Result {
	method := h.Method
	if method == "" {
		method = http.MethodPost
	}
	var body io.Reader
	ct := ""
	switch {
	case h.JSON != nil:
		b, err := json.Marshal(h.JSON)
		if err != nil {
			return Result{Err: fmt.Errorf("json body: %w", err)}
		}
		body, ct = bytes.NewReader(b), "application/json"
	case h.Body != "":
		body = strings.NewReader(h.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.URL, body)
	if err != nil {
		return Result{Err: fmt.Errorf("request %s %s: %w", method, h.URL, err)}
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for name, envName := range h.HeadersEnv {
		v, ok := x.lookup(envName)
		if !ok {
			return Result{Err: fmt.Errorf("header %s: environment variable %s is NOT SET", name, envName)}
		}
		req.Header.Set(name, v)
	}
	resp, err := x.client().Do(req)
	if err != nil {
		return Result{Err: fmt.Errorf("%s %s: %w", method, h.URL, err)}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, int64(x.tailBytes())))
	res := Result{OutputTail: fmt.Sprintf("HTTP %d %s", resp.StatusCode, strings.TrimSpace(string(b)))}
	if !statusOK(resp.StatusCode, h.ExpectStatus) {
		res.Err = fmt.Errorf("%s %s answered HTTP %d, want %s", method, h.URL, resp.StatusCode, wantStatus(h.ExpectStatus))
	}
	return res
}

func (x *Executor) lookup(name string) (string, bool) {
	if x.Env == nil {
		return os.LookupEnv(name)
	}
	return x.Env(name)
}

// Health runs one attempt of a health check: GET url, expect 2xx (or the
// given status).
func (x *Executor) Health(ctx context.Context, h plan.HealthCheck) Result {
	ctx, cancel := context.WithTimeout(ctx, h.EffectiveTimeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return Result{Err: fmt.Errorf("health %s: %w", h.URL, err)}
	}
	resp, err := x.client().Do(req)
	if err != nil {
		return Result{Err: fmt.Errorf("%s: UNHEALTHY: %w", h.URL, err)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if !statusOK(resp.StatusCode, h.ExpectStatus) {
		return Result{Err: fmt.Errorf("%s: UNHEALTHY: HTTP %d, want %s", h.URL, resp.StatusCode, wantStatus(h.ExpectStatus))}
	}
	return Result{OutputTail: fmt.Sprintf("%s: HEALTHY (HTTP %d)", h.URL, resp.StatusCode)}
}

func statusOK(got, want int) bool {
	if want == 0 {
		return got >= 200 && got <= 299
	}
	return got == want
}

func wantStatus(want int) string {
	if want == 0 {
		return "2xx"
	}
	return fmt.Sprint(want)
}
