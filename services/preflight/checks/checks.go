// Package checks runs the pre-flight checks of a plan: each kind with its
// timeout, all of them concurrently, each result with what was measured
// and what it was judged against. Values of environment variables are never
// reported, only SET / NOT SET; secrets read for a check (a DSN, a password,
// a URL with credentials) are kept out of every result field.
package checks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus/procio"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Env looks up an environment variable by name.
type Env func(name string) (string, bool)

// Runner runs checks.
type Runner struct {
	HTTP *http.Client
	Env  Env
	// DefaultTimeout applies to checks without a timeout (default 5s).
	DefaultTimeout time.Duration
	// Proc is where the resources check reads stat and meminfo (default
	// /proc); tests point it at fixture files.
	Proc string
	// CPUSample is the gap between the two /proc/stat samples the CPU usage
	// is computed from (default 200ms).
	CPUSample time.Duration

	// BaseEnv is the environment command checks start from (default
	// os.Environ()).
	BaseEnv []string
	// OnStart, when set, is told the pid (= process group id) of each
	// command check as it starts (tests watch the group with it).
	OnStart func(pid int)

	// pause waits between the two CPU samples; tests swap the fixture
	// files in it. nil means sleep (cancelled with ctx).
	pause func(ctx context.Context, d time.Duration) error
	// planEnv names the variables of the whole plan (plan.SecretEnv), set
	// by ForPlan: their values are redacted from command checks' output
	// as from deploy steps'.
	planEnv []string
}

// ForPlan is r for the checks of plan p: the values of every environment
// variable p names (plan.SecretEnv) are redacted from command checks'
// output with the deploy steps' redaction (procio.Redactor), besides the
// scrub of every result (SecretValues).
func (r *Runner) ForPlan(p *plan.Plan) *Runner {
	y := *r
	y.planEnv = p.SecretEnv()
	return &y
}

// failure is a check's failure in the seed's words: "PostgreSQL: CONNECTION
// FAILED" and what went wrong. A timeout keeps the words and says after how
// long.
type failure struct {
	what   string // "PostgreSQL: CONNECTION FAILED"
	detail string
}

func (f *failure) Error() string {
	if f.detail == "" {
		return f.what
	}
	return f.what + ": " + f.detail
}

func fail(what, format string, args ...any) error {
	return &failure{what: what, detail: fmt.Sprintf(format, args...)}
}

// job is one check being run: its result and the secrets that must not
// appear in it.
type job struct {
	res     *runbookv1.CheckResult
	secrets []string
}

// secret marks s (a password, a DSN, a URL with credentials) as never to be
// reported.
// Values shorter than 4 characters are not scrubbed: replacing them would
// garble every message, and the messages are built without secrets anyway.
func (j *job) secret(s string) {
	if len(s) >= 4 {
		j.secrets = append(j.secrets, s)
	}
}

// scrub replaces every secret in the result's text fields: the last guard
// behind messages that are built without them.
func (j *job) scrub() { Scrub(j.res, j.secrets) }

// Scrub replaces every secret value (of 4 characters or more) in res's
// name, value, threshold and message by [REDACTED].
func Scrub(res *runbookv1.CheckResult, secrets []string) {
	for _, f := range []*string{&res.Message, &res.Value, &res.Threshold, &res.Name} {
		*f = ScrubText(*f, secrets)
	}
}

// ScrubText is text with every secret value (of 4 characters or more)
// replaced by [REDACTED].
func ScrubText(text string, secrets []string) string {
	secrets = slices.DeleteFunc(slices.Clone(secrets), func(s string) bool { return len(s) < 4 })
	// Longest first, so that a DSN goes before the password inside it.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, s := range secrets {
		text = strings.ReplaceAll(text, s, "[REDACTED]")
	}
	return text
}

// SecretValues are the values, as r.Env reads them, of the environment
// variables plan p names (plan.SecretEnv): what no check result may show,
// whichever check read them.
func (r *Runner) SecretValues(p *plan.Plan) []string {
	var out []string
	for _, n := range p.SecretEnv() {
		if v, ok := r.lookup(n); ok && v != "" {
			out = append(out, v)
		}
	}
	return out
}

// RunAll runs every check concurrently and returns the results in plan
// order; secrets (SecretValues) are scrubbed from every result, besides
// what each check reads itself.
func (r *Runner) RunAll(ctx context.Context, cs []plan.Check, secrets ...string) []*runbookv1.CheckResult {
	out := make([]*runbookv1.CheckResult, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = r.Run(ctx, i, c, secrets...)
		}()
	}
	wg.Wait()
	return out
}

// Run runs one check; secrets are scrubbed from its result, besides what
// the check reads itself.
func (r *Runner) Run(ctx context.Context, index int, c plan.Check, secrets ...string) *runbookv1.CheckResult {
	timeout := c.EffectiveTimeout()
	if c.Timeout.Duration == 0 && r.DefaultTimeout > 0 {
		timeout = r.DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	kind := c.Kind()
	name := c.Name
	if name == "" {
		name = fmt.Sprintf("%s check #%d", kind, index+1)
	}
	j := &job{res: &runbookv1.CheckResult{Name: name, Kind: kind, Blocking: c.IsBlocking()}}
	for _, s := range secrets {
		j.secret(s)
	}
	res := j.res
	start := time.Now()
	var err error
	// Every kind of plan.Check is here; validation refuses a check without
	// one, so the last case only guards against a plan built by hand.
	switch {
	case c.HTTP != nil:
		err = r.http(ctx, c.HTTP, j)
	case c.TCP != nil:
		err = tcp(ctx, c.TCP, res)
	case c.Env != nil:
		err = r.env(c.Env, res)
	case c.Command != nil:
		err = r.command(ctx, c.Command, res)
	case c.Postgres != nil:
		err = r.postgres(ctx, c.Postgres, j)
	case c.Redis != nil:
		err = r.redis(ctx, c.Redis, j)
	case c.NATS != nil:
		err = r.nats(ctx, c.NATS, j)
	case c.Resources != nil:
		err = r.resources(ctx, c.Resources, res)
	case c.File != nil:
		err = file(ctx, c.File, res)
	default:
		err = errors.New("the check sets no kind: write one of http, tcp, env, command, postgres, redis, nats, resources, file")
	}
	res.DurationMs = time.Since(start).Milliseconds()
	var f *failure
	switch {
	case err == nil:
		res.Status = runbookv1.CheckStatus_CHECK_STATUS_PASS
		if res.Message == "" {
			res.Message = "ok"
		}
	case expired(ctx) && errors.As(err, &f):
		res.Status = failOrWarn(res.Blocking)
		res.Message = fmt.Sprintf("%s: timed out after %s", f.what, timeout)
		if f.detail != "" {
			res.Message += " (" + f.detail + ")"
		}
	case expired(ctx):
		res.Status = failOrWarn(res.Blocking)
		res.Message = fmt.Sprintf("timed out after %s: %v", timeout, err)
	default:
		// Blocking checks fail, the others warn (resources by default).
		res.Status = failOrWarn(res.Blocking)
		res.Message = err.Error()
	}
	j.scrub()
	return res
}

// expired reports that the check's time ran out: its context says so, or
// its deadline has passed (a socket deadline set to the same instant can
// fire before the context's timer does).
func expired(ctx context.Context) bool {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

func failOrWarn(blocking bool) runbookv1.CheckStatus {
	if blocking {
		return runbookv1.CheckStatus_CHECK_STATUS_FAIL
	}
	return runbookv1.CheckStatus_CHECK_STATUS_WARN
}

func (r *Runner) lookup(name string) (string, bool) {
	if r.Env == nil {
		return "", false
	}
	return r.Env(name)
}

func (r *Runner) http(ctx context.Context, c *plan.HTTPCheck, j *job) error {
	res := j.res
	method := c.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, c.URL, nil)
	if err != nil {
		return fmt.Errorf("bad request to %s: %w", c.URL, err)
	}
	for h, env := range c.HeadersEnv {
		if v, ok := r.lookup(env); ok {
			j.secret(v)
			req.Header.Set(h, v)
		} else {
			return fmt.Errorf("header %s: environment variable %s is NOT SET", h, env)
		}
	}
	client := r.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: UNREACHABLE: %w", method, c.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	ms := time.Since(start).Milliseconds()
	res.Value = fmt.Sprintf("HTTP %d in %d ms", resp.StatusCode, ms)
	want := "2xx"
	if c.ExpectStatus != 0 {
		want = fmt.Sprint(c.ExpectStatus)
	}
	res.Threshold = "status " + want
	if c.MaxMS > 0 {
		res.Threshold += fmt.Sprintf(", ≤ %d ms", c.MaxMS)
	}
	if c.ExpectStatus != 0 && resp.StatusCode != c.ExpectStatus || c.ExpectStatus == 0 && (resp.StatusCode < 200 || resp.StatusCode > 299) {
		return fmt.Errorf("%s answered HTTP %d, want %s", c.URL, resp.StatusCode, want)
	}
	if c.MaxMS > 0 && ms > int64(c.MaxMS) {
		return fmt.Errorf("%s answered in %d ms, more than max_ms %d", c.URL, ms, c.MaxMS)
	}
	if c.BodyContains != "" && !bytes.Contains(body, []byte(c.BodyContains)) {
		return fmt.Errorf("%s body does not contain %q", c.URL, c.BodyContains)
	}
	if len(c.JSON) > 0 {
		var doc any
		if err := json.Unmarshal(body, &doc); err != nil {
			return fmt.Errorf("%s body is not JSON: %w", c.URL, err)
		}
		for path, want := range c.JSON {
			got, ok := lookupPath(doc, path)
			if !ok {
				return fmt.Errorf("%s: JSON field %s is missing", c.URL, path)
			}
			if fmt.Sprint(want) != "*" && fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("%s: JSON field %s is %v, want %v", c.URL, path, got, want)
			}
		}
	}
	res.Message = "REACHABLE"
	return nil
}

func lookupPath(doc any, path string) (any, bool) {
	cur := doc
	for _, part := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func tcp(ctx context.Context, c *plan.TCPCheck, res *runbookv1.CheckResult) error {
	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.Address)
	if err != nil {
		return fmt.Errorf("%s: UNREACHABLE: %w", c.Address, err)
	}
	_ = conn.Close()
	res.Value = fmt.Sprintf("connected in %d ms", time.Since(start).Milliseconds())
	res.Message = "REACHABLE"
	return nil
}

func (r *Runner) env(c *plan.EnvCheck, res *runbookv1.CheckResult) error {
	var missing, parts []string
	for _, name := range c.Required {
		if v, ok := r.lookup(name); ok && v != "" {
			parts = append(parts, name+": SET")
		} else {
			parts = append(parts, name+": NOT SET")
			missing = append(missing, name)
		}
	}
	res.Value = strings.Join(parts, ", ")
	res.Threshold = "all set"
	if len(missing) > 0 {
		return fmt.Errorf("NOT SET: %s", strings.Join(missing, ", "))
	}
	res.Message = "all required variables SET"
	return nil
}

// command runs the check's command as the deployer runs a step's
// (procio.Run): in its own process group, killed whole at the timeout,
// with the plan's secrets and secret-looking variables redacted.
func (r *Runner) command(ctx context.Context, c *plan.Command, res *runbookv1.CheckResult) error {
	base := r.BaseEnv
	if base == nil {
		base = os.Environ()
	}
	env := slices.Clone(base)
	for k, v := range c.Env {
		env = append(env, k+"="+v)
	}
	sec := map[string]string{}
	for _, n := range r.planEnv {
		if v, ok := r.lookup(n); ok {
			sec[n] = v
		}
	}
	pc := procio.Command{Argv: c.Argv, Shell: c.Shell, Dir: c.Dir, Env: env, TailBytes: 300, OnStart: r.OnStart,
		Secrets: procio.NewRedactor(procio.CommandSecrets(sec, c.Env, base))}
	out := procio.Run(ctx, pc)
	if out.Err != nil {
		return out.Err
	}
	res.Value = fmt.Sprintf("exit %d", out.ExitCode)
	res.Threshold = fmt.Sprintf("exit %d", c.ExpectExit)
	if out.ExitCode != c.ExpectExit {
		return pc.Secrets.RedactError(fmt.Errorf("%s exited %d, want %d: %s", pc.Text(), out.ExitCode, c.ExpectExit, out.Output))
	}
	return nil
}

// file checks that the path exists and is readable: a regular file is
// opened and its first byte read (an empty file is fine), a directory is
// opened and its first entry listed; anything else (a device, a pipe, a
// socket) is checked with access(2), since reading it could block. The
// work runs aside so that a hung file system ends at the check's timeout.
func file(ctx context.Context, c *plan.FileCheck, res *runbookv1.CheckResult) error {
	type outcome struct {
		value, msg string
		err        error
	}
	done := make(chan outcome, 1)
	go func() {
		v, m, err := probeFile(c.Path)
		done <- outcome{v, m, err}
	}()
	select {
	case o := <-done:
		res.Value = o.value
		if o.err != nil {
			return o.err
		}
		res.Message = o.msg
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: no answer from the file system: %w", c.Path, ctx.Err())
	}
}

func probeFile(path string) (value, msg string, err error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", "", fileErr(path, "does not exist", err)
		}
		return "", "", fileErr(path, "cannot be reached", err)
	}
	mode := st.Mode()
	switch {
	case mode.IsRegular():
		f, err := os.Open(path)
		if err != nil {
			return fmt.Sprintf("file, %d bytes", st.Size()), "", fileErr(path, "exists but cannot be opened", err)
		}
		defer f.Close()
		var one [1]byte
		if _, err := f.Read(one[:]); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Sprintf("file, %d bytes", st.Size()), "", fileErr(path, "exists but cannot be read", err)
		}
		return fmt.Sprintf("file, %d bytes", st.Size()), "exists and is readable", nil
	case mode.IsDir():
		f, err := os.Open(path)
		if err != nil {
			return "directory", "", fileErr(path, "is a directory that cannot be opened", err)
		}
		defer f.Close()
		if _, err := f.ReadDir(1); err != nil && !errors.Is(err, io.EOF) {
			return "directory", "", fileErr(path, "is a directory that cannot be listed", err)
		}
		return "directory", "exists and is readable (a directory: its entries can be listed)", nil
	default:
		kind := fileType(mode)
		if err := syscall.Access(path, 4 /* R_OK */); err != nil {
			return kind, "", fileErr(path, "exists ("+kind+") but is not readable", err)
		}
		return kind, "exists and is readable (" + kind + ", not read)", nil
	}
}

func fileErr(path, what string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is already in the message
	}
	return fmt.Errorf("%s %s: %w", path, what, err)
}

func fileType(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	}
	return "special file"
}
