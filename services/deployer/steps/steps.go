// Package steps executes deploy, rollback and finally steps and health
// checks. Commands run from argv, or a plan's own shell script; run data
// reaches them only as RUNBOOK_* environment variables, never as code. Each
// command runs in its own process group, killed whole on cancel or timeout.
// Secret values are redacted from every step's output and error.
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
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/expect"
	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus/backup"
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
	// Backup, for a backup step that succeeded, is the run's backup as it
	// now stands (its directory and metadata), for backup.done.
	Backup *backup.Result
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
	// OnStart, when set, is told the pid (= process group id) of each
	// command as it starts (tests watch the group with it).
	OnStart func(pid int)
	// KillGrace is how long a cancelled command's process group has after
	// SIGTERM before SIGKILL (default 200ms).
	KillGrace time.Duration

	// planEnv names the environment variables of the whole plan
	// (plan.SecretEnv), set by ForPlan: their values are redacted from
	// every step and health check, whichever of them read the variable.
	planEnv []string
	// backupDir is where a backup step makes the run's backup directory
	// when it has none (plan.BackupDir, set by ForPlan).
	backupDir string
	// runInfo is the run's, for backup steps (ForRun).
	runInfo RunInfo
}

// ForPlan is x for the steps and health checks of plan p: the values of
// every environment variable p names (plan.SecretEnv: its *_env fields and
// ${env:NAME} references) are redacted from their results and output,
// besides what each step's own Secrets adds.
func (x *Executor) ForPlan(p *plan.Plan) *Executor {
	y := *x
	y.planEnv = p.SecretEnv()
	y.backupDir = p.BackupDir()
	return &y
}

// Backoff is the pause before retry number attempt (1 = after the first
// failed attempt): base (default plan.DefaultStepRetryDelay) doubled for
// each further attempt, at most plan.DefaultStepRetryDelayCap.
func Backoff(attempt int32, base time.Duration) time.Duration {
	if base <= 0 {
		base = plan.DefaultStepRetryDelay
	}
	d := base
	for i := int32(1); i < attempt && d < plan.DefaultStepRetryDelayCap; i++ {
		d *= 2
	}
	return min(d, max(base, plan.DefaultStepRetryDelayCap))
}

// Run runs one attempt of step s with the run's data in runEnv
// (RUNBOOK_RUN_ID, ...). Secrets the step refers to are redacted from the
// result (see Secrets).
func (x *Executor) Run(ctx context.Context, s plan.Step, runEnv map[string]string) Result {
	return x.Secrets(s).RedactResult(x.run(ctx, s, runEnv, nil))
}

// Output receives a command's output as the command writes it: stream is
// "stdout" or "stderr", p the raw bytes (NOT redacted; the receiver must
// redact with Secrets before the text leaves the process). It is called
// from the goroutines that copy the command's pipes, for both streams
// concurrently; p is only valid during the call; it must not block.
type Output func(stream string, p []byte)

// RunOutput is Run that also hands a command step's output to out as it is
// written (other kinds of step write nothing to out). out may be nil.
func (x *Executor) RunOutput(ctx context.Context, s plan.Step, runEnv map[string]string, out Output) Result {
	return x.Secrets(s).RedactResult(x.run(ctx, s, runEnv, out))
}

// outputWriter hands one stream of a command to an Output.
type outputWriter struct {
	stream string
	out    Output
}

func (w outputWriter) Write(p []byte) (int, error) {
	w.out(w.stream, p)
	return len(p), nil
}

// Secrets is the redactor for step s: the values of the variables the
// plan names (ForPlan) and its own *_env fields name, of its own env
// entries whose name looks secret (SecretName), and of the secret-looking
// variables of the environment its commands start from.
func (x *Executor) Secrets(s plan.Step) *Redactor {
	sec := x.planSecrets()
	if s.HTTP != nil {
		for _, n := range s.HTTP.HeadersEnv {
			if v, ok := x.lookup(n); ok {
				sec[n] = v
			}
		}
	}
	if s.SQL != nil && s.SQL.DSNEnv != "" {
		if v, ok := x.lookup(s.SQL.DSNEnv); ok {
			sec[s.SQL.DSNEnv] = v
		}
	}
	if s.Command != nil {
		sec = procio.CommandSecrets(sec, s.Command.Env, x.baseEnv())
	}
	if s.Backup != nil {
		for _, b := range s.Backup.Steps {
			if b.Command != nil {
				sec = procio.CommandSecrets(sec, b.Command.Env, x.baseEnv())
			}
		}
	}
	return NewRedactor(sec)
}

// planSecrets are the values of the plan's variables (ForPlan), by name.
func (x *Executor) planSecrets() map[string]string {
	sec := map[string]string{}
	for _, n := range x.planEnv {
		if v, ok := x.lookup(n); ok {
			sec[n] = v
		}
	}
	return sec
}

// HealthSecrets is the redactor of health check h: the values of the
// variables the plan names (ForPlan) and of h's headers_env.
func (x *Executor) HealthSecrets(h plan.HealthCheck) *Redactor {
	sec := x.planSecrets()
	for _, n := range h.HeadersEnv {
		if v, ok := x.lookup(n); ok {
			sec[n] = v
		}
	}
	return NewRedactor(sec)
}

func (x *Executor) baseEnv() []string {
	if x.BaseEnv == nil {
		return os.Environ()
	}
	return x.BaseEnv
}

func (x *Executor) run(ctx context.Context, s plan.Step, runEnv map[string]string, stream Output) Result {
	ctx, cancel := context.WithTimeout(ctx, s.EffectiveTimeout())
	defer cancel()
	switch {
	case s.Command != nil:
		return x.command(ctx, s.Command, runEnv, stream)
	case s.HTTP != nil:
		return x.http(ctx, s.HTTP)
	case s.Restore != nil:
		return restore(ctx, s.Restore, runEnv[BackupDirEnv])
	case s.SQL != nil:
		return x.sql(ctx, s.SQL)
	case s.Backup != nil:
		return x.backup(ctx, s, runEnv)
	case s.Wait != nil && s.Wait.Until != nil:
		return x.waitUntil(ctx, s.Wait.Until)
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

func (x *Executor) command(ctx context.Context, c *plan.Command, runEnv map[string]string, stream Output) Result {
	env := append([]string(nil), x.baseEnv()...)
	for k, v := range c.Env {
		env = append(env, k+"="+v)
	}
	for k, v := range runEnv {
		env = append(env, k+"="+v)
	}
	pc := procio.Command{Argv: c.Argv, Shell: c.Shell, Dir: c.Dir, Env: env,
		TailBytes: x.tailBytes(), KillGrace: x.killGrace(), OnStart: x.OnStart}
	if stream != nil {
		// Two pipes then, so the streams stay apart; the tail keeps both.
		pc.Stdout, pc.Stderr = outputWriter{"stdout", stream}, outputWriter{"stderr", stream}
	}
	// Redaction is the caller's (Run, RunOutput: x.Secrets).
	r := procio.Run(ctx, pc)
	res := Result{ExitCode: r.ExitCode, OutputTail: r.Output, Err: r.Err}
	if res.Err == nil && res.ExitCode != 0 {
		res.Err = fmt.Errorf("%s exited %d", pc.Text(), res.ExitCode)
	}
	return res
}

func (x *Executor) killGrace() time.Duration {
	if x.KillGrace > 0 {
		return x.KillGrace
	}
	return 200 * time.Millisecond
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
	obs, err := x.observe(req)
	if err != nil {
		return Result{Err: fmt.Errorf("%s %s: %w", method, h.URL, err)}
	}
	b := obs.Body[:min(len(obs.Body), x.tailBytes())]
	res := Result{OutputTail: fmt.Sprintf("HTTP %d %s", obs.Status, strings.TrimSpace(string(b)))}
	if r := expect.Evaluate(h.Expectation(), obs); !r.Pass {
		res.Err = fmt.Errorf("%s %s: %s", method, h.URL, r.Error())
	}
	return res
}

func (x *Executor) lookup(name string) (string, bool) {
	if x.Env == nil {
		return os.LookupEnv(name)
	}
	return x.Env(name)
}

// Health runs one attempt of a health check: GET url with its headers_env;
// it passes when the response meets every assertion of h.Expectation() (by
// default: any 2xx), and its error names each unmet one with the value
// found. Secrets (HealthSecrets) are redacted from the result.
func (x *Executor) Health(ctx context.Context, h plan.HealthCheck) Result {
	return x.HealthSecrets(h).RedactResult(x.health(ctx, h))
}

func (x *Executor) health(ctx context.Context, h plan.HealthCheck) Result {
	ctx, cancel := context.WithTimeout(ctx, h.EffectiveTimeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return Result{Err: fmt.Errorf("health %s: %w", h.URL, err)}
	}
	for name, envName := range h.HeadersEnv {
		v, ok := x.lookup(envName)
		if !ok {
			return Result{Err: fmt.Errorf("%s: not checked: header %s: environment variable %s is NOT SET", h.URL, name, envName)}
		}
		req.Header.Set(name, v)
	}
	obs, err := x.observe(req)
	if err != nil {
		return Result{Err: fmt.Errorf("%s: UNHEALTHY: %w", h.URL, err)}
	}
	r := expect.Evaluate(h.Expectation(), obs)
	if !r.Pass {
		return Result{Err: fmt.Errorf("%s: UNHEALTHY: %s", h.URL, r.Error())}
	}
	return Result{OutputTail: fmt.Sprintf("%s: HEALTHY (%s)", h.URL, r.Details)}
}
