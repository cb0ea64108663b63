// Package checks runs the pre-flight checks of a plan: each kind with its
// timeout, all of them concurrently, each result with what was measured
// and what it was judged against. Values of environment variables are never
// reported, only SET / NOT SET.
package checks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/kis-core/runbook/domain/plan"
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
}

// RunAll runs every check concurrently and returns the results in plan order.
func (r *Runner) RunAll(ctx context.Context, cs []plan.Check) []*runbookv1.CheckResult {
	out := make([]*runbookv1.CheckResult, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = r.Run(ctx, i, c)
		}()
	}
	wg.Wait()
	return out
}

// Run runs one check.
func (r *Runner) Run(ctx context.Context, index int, c plan.Check) *runbookv1.CheckResult {
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
	res := &runbookv1.CheckResult{Name: name, Kind: kind, Blocking: c.IsBlocking()}
	start := time.Now()
	var err error
	switch {
	case c.HTTP != nil:
		err = r.http(ctx, c.HTTP, res)
	case c.TCP != nil:
		err = tcp(ctx, c.TCP, res)
	case c.Env != nil:
		err = r.env(c.Env, res)
	case c.Command != nil:
		err = command(ctx, c.Command, res)
	case c.File != nil:
		err = file(c.File, res)
	case c.Redis != nil:
		err = r.redis(ctx, c.Redis, res)
	default:
		err = fmt.Errorf("check kind %q is not supported by this version of runbook (supported: http, tcp, env, command, file, redis)", kind)
	}
	res.DurationMs = time.Since(start).Milliseconds()
	switch {
	case err == nil:
		res.Status = runbookv1.CheckStatus_CHECK_STATUS_PASS
		if res.Message == "" {
			res.Message = "ok"
		}
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		res.Status = failOrWarn(res.Blocking)
		res.Message = fmt.Sprintf("timed out after %s: %v", timeout, err)
	default:
		res.Status = failOrWarn(res.Blocking)
		res.Message = err.Error()
	}
	return res
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

func (r *Runner) http(ctx context.Context, c *plan.HTTPCheck, res *runbookv1.CheckResult) error {
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

func command(ctx context.Context, c *plan.Command, res *runbookv1.CheckResult) error {
	if len(c.Argv) == 0 {
		return errors.New("command has no argv")
	}
	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = os.Environ()
	for k, v := range c.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return fmt.Errorf("%s: %w", strings.Join(c.Argv, " "), err)
		}
		code = ee.ExitCode()
	}
	res.Value = fmt.Sprintf("exit %d", code)
	res.Threshold = fmt.Sprintf("exit %d", c.ExpectExit)
	if code != c.ExpectExit {
		return fmt.Errorf("%s exited %d, want %d: %s", strings.Join(c.Argv, " "), code, c.ExpectExit, tail(out.String(), 300))
	}
	return nil
}

func file(c *plan.FileCheck, res *runbookv1.CheckResult) error {
	f, err := os.Open(c.Path)
	if err != nil {
		return fmt.Errorf("%s: %w", c.Path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", c.Path, err)
	}
	res.Value = fmt.Sprintf("%d bytes", st.Size())
	res.Message = "exists and is readable"
	return nil
}

func (r *Runner) redis(ctx context.Context, c *plan.RedisCheck, res *runbookv1.CheckResult) error {
	addr := c.Address
	if c.AddressEnv != "" {
		v, ok := r.lookup(c.AddressEnv)
		if !ok || v == "" {
			return fmt.Errorf("environment variable %s is NOT SET", c.AddressEnv)
		}
		addr = strings.TrimPrefix(v, "redis://")
		if i := strings.IndexByte(addr, '/'); i >= 0 {
			addr = addr[:i]
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("Redis: CONNECTION FAILED: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return fmt.Errorf("Redis: CONNECTION FAILED: %w", err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("Redis: CONNECTION FAILED: %w", err)
	}
	line = strings.TrimSpace(line)
	res.Value = line
	res.Threshold = "+PONG"
	if line != "+PONG" {
		return fmt.Errorf("Redis answered %q to PING", line)
	}
	res.Message = "CONNECTED"
	return nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
