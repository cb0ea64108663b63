package procio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Command is one plan command to run: the deploy steps, the pre-flight
// command checks and the backup commands all run theirs through Run, so
// each runs in its own process group, killed whole when its context ends,
// with the same secrets redacted from what it reports.
type Command struct {
	// Argv is the program and its arguments, run without a shell; Shell,
	// when set instead, is the plan author's own script, run with
	// /bin/sh -c.
	Argv  []string
	Shell string
	Dir   string
	// Env is the command's whole environment, "NAME=value" (a later entry
	// of a name wins).
	Env []string
	// Secrets are redacted from the result's Output and Err (nil: none).
	Secrets *Redactor
	// TailBytes is how much output the result keeps (default 2 KiB).
	TailBytes int
	// KillGrace is how long the process group has after SIGTERM before
	// SIGKILL once the context ends (default 200ms).
	KillGrace time.Duration
	// Stdout and Stderr, when set, also receive the output as it is
	// written, raw (NOT redacted: the receiver redacts before the text
	// leaves the process).
	Stdout, Stderr io.Writer
	// StdoutTo, when set, receives stdout in place of the tail (a backup's
	// dump file): the tail then keeps stderr only.
	StdoutTo io.Writer
	// OnStart, when set, is told the pid (= process group id) as the
	// command starts.
	OnStart func(pid int)
}

// Result of a command.
type Result struct {
	// ExitCode is the command's exit status: -1 when it did not start or
	// was killed by a signal.
	ExitCode int
	// Output is the tail of its output (stdout and stderr interleaved),
	// trimmed and redacted.
	Output string
	// Err says why the command did not run to its end: it could not start,
	// or its context ended (the error wraps the context's cause). A command
	// that exited, with any code, has no Err: the caller judges the code.
	Err error
}

// Text names the command in messages: its argv (or script) on one line,
// at most 120 characters.
func (c Command) Text() string {
	t := strings.Join(strings.Fields(strings.Join(c.argv(), " ")), " ")
	if len(t) > 120 {
		t = t[:120] + " …"
	}
	return t
}

// argv is what runs: Shell with /bin/sh -c when set, else Argv.
func (c Command) argv() []string {
	if c.Shell != "" {
		return []string{"/bin/sh", "-c", c.Shell}
	}
	return c.Argv
}

// Run runs c in its own process group until it exits or ctx ends; then the
// whole group gets SIGTERM, and SIGKILL after KillGrace, so what a script
// started in the background dies with it. If the service itself dies, the
// command gets SIGKILL from the kernel (Linux's parent-death signal), and
// with TrackPids in ctx a pid file lets the service's next start kill what
// remains of its group (SweepPidFiles).
func Run(ctx context.Context, c Command) Result {
	argv := c.argv()
	if len(argv) == 0 || argv[0] == "" {
		return Result{ExitCode: -1, Err: errors.New("command has no argv")}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = c.Dir
	cmd.Env = c.Env
	inGroup(cmd, c.killGrace())
	tail := NewTailBuffer(c.tailBytes())
	var stdout, stderr io.Writer = tail, tail
	if c.StdoutTo != nil {
		stdout = c.StdoutTo
	}
	if c.Stdout != nil {
		stdout = io.MultiWriter(stdout, c.Stdout)
	}
	if c.Stderr != nil {
		stderr = io.MultiWriter(stderr, c.Stderr)
	}
	cmd.Stdout, cmd.Stderr = pooled(stdout), pooled(stderr)
	if null, err := devNull(); err == nil {
		cmd.Stdin = null // else exec opens /dev/null itself
	}
	// Output pipes held open by a child that outlived the group's kill
	// (it left the group) stop being waited for after this.
	cmd.WaitDelay = 2 * time.Second
	unlock := dieWithParent(cmd) // held from Start to Wait: see dieWithParent
	err := cmd.Start()
	if err == nil {
		ended := trackPid(ctx, cmd.Process.Pid, c.Text())
		if c.OnStart != nil {
			c.OnStart(cmd.Process.Pid)
		}
		err = cmd.Wait()
		ended()
	}
	unlock()
	res := Result{Output: c.Secrets.Redact(tail.String())}
	if err != nil {
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee) && ctx.Err() != nil:
			res.ExitCode = ee.ExitCode()
			res.Err = fmt.Errorf("%s: %w", c.Text(), context.Cause(ctx))
		case errors.As(err, &ee):
			res.ExitCode = ee.ExitCode()
		default:
			res.ExitCode = -1
			res.Err = fmt.Errorf("%s: %w", c.Text(), err)
		}
	}
	res.Err = c.Secrets.RedactError(res.Err)
	return res
}

func (c Command) killGrace() time.Duration {
	if c.KillGrace > 0 {
		return c.KillGrace
	}
	return 200 * time.Millisecond
}

func (c Command) tailBytes() int {
	if c.TailBytes > 0 {
		return c.TailBytes
	}
	return 2048
}

// CommandSecrets adds to secrets (name → value; made when nil) what a
// command's results must never show besides the values the plan names:
// its own env entries whose name looks secret (SecretName), and the
// secret-looking variables of the environment it starts from (baseEnv,
// "NAME=value"). A name already in secrets keeps its value.
func CommandSecrets(secrets map[string]string, env map[string]string, baseEnv []string) map[string]string {
	if secrets == nil {
		secrets = map[string]string{}
	}
	for k, v := range env {
		if SecretName(k, v) {
			secrets[k] = v
		}
	}
	for _, kv := range baseEnv {
		if k, v, ok := strings.Cut(kv, "="); ok && SecretName(k, v) {
			if _, have := secrets[k]; !have {
				secrets[k] = v
			}
		}
	}
	return secrets
}

// devNull is /dev/null opened once, every command's stdin (exec opens it
// for each command otherwise).
var devNull = sync.OnceValues(func() (*os.File, error) { return os.Open(os.DevNull) })

// copyBufs are the buffers a command's output is copied through: exec
// allocates 32 KiB per output pipe and command otherwise.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// pooledCopy is an output writer whose ReadFrom (what exec's copy from the
// pipe calls) uses a pooled buffer. It is comparable when w is, so the
// same writer for stdout and stderr still shares one pipe.
type pooledCopy struct{ w io.Writer }

func (p pooledCopy) Write(b []byte) (int, error) { return p.w.Write(b) }

func (p pooledCopy) ReadFrom(r io.Reader) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(writerOnly{p.w}, r, *buf)
}

// pooled wraps w in a pooledCopy, except a file: exec hands a file to the
// command as it is (no pipe, no copy).
func pooled(w io.Writer) io.Writer {
	if _, ok := w.(*os.File); ok {
		return w
	}
	return pooledCopy{w}
}

// writerOnly hides a writer's ReadFrom from io.CopyBuffer.
type writerOnly struct{ io.Writer }
