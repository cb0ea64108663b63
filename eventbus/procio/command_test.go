package procio

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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

// childPid reads the pid a command wrote to file, waiting for it.
func childPid(t *testing.T, file string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(file)
		if s := strings.TrimSpace(string(b)); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("pid file %q: %v", b, err)
			}
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("the command wrote no pid to %s", file)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A command whose script left a child in the background is killed as a
// whole group when its time runs out: the child is gone too, and the
// result says why.
func TestRunKillsTheGroupAtTimeout(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skipf("no /proc: %v", err)
	}
	pidFile := filepath.Join(t.TempDir(), "child")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	res := Run(ctx, Command{Shell: "sleep 30 & echo $! > " + pidFile + "; wait", Env: []string{"PATH=" + os.Getenv("PATH")}})
	if !errors.Is(res.Err, context.DeadlineExceeded) || res.ExitCode != -1 {
		t.Fatalf("result %+v: want the deadline, killed", res)
	}
	pid := childPid(t, pidFile)
	deadline := time.Now().Add(5 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("background child %d still runs after its command timed out", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Output and errors show no secret, in any form the redactor knows; the
// exit code is the command's and no Err is set for an exit.
func TestRunRedactsAndReportsTheExit(t *testing.T) {
	const secret = "hunter2-very-secret"
	b64 := base64.StdEncoding.EncodeToString([]byte(secret))
	red := NewRedactor(CommandSecrets(nil, map[string]string{"DB_PASSWORD": secret}, nil))
	res := Run(context.Background(), Command{
		Argv:    []string{"sh", "-c", `echo "pw $DB_PASSWORD b64 ` + b64 + `" >&2; exit 3`},
		Env:     []string{"PATH=" + os.Getenv("PATH"), "DB_PASSWORD=" + secret},
		Secrets: red,
	})
	if res.Err != nil || res.ExitCode != 3 {
		t.Fatalf("result %+v: want exit 3 and no Err", res)
	}
	if want := "pw [REDACTED:DB_PASSWORD] b64 [REDACTED:DB_PASSWORD]"; res.Output != want {
		t.Fatalf("output %q, want %q", res.Output, want)
	}
	res = Run(context.Background(), Command{Argv: []string{"/nonexistent/" + secret}, Secrets: red})
	if res.Err == nil || res.ExitCode != -1 || strings.Contains(res.Err.Error(), secret) || !strings.Contains(res.Err.Error(), "[REDACTED:DB_PASSWORD]") {
		t.Fatalf("a command that cannot start: %+v", res)
	}
	if res := Run(context.Background(), Command{}); res.Err == nil {
		t.Fatal("a command with nothing to run ran")
	}
}

// StdoutTo takes stdout in place of the tail; Stdout and Stderr see the
// raw streams as written.
func TestRunStreams(t *testing.T) {
	var file, so, se TailBuffer
	file.Max, so.Max, se.Max = 100, 100, 100
	res := Run(context.Background(), Command{Shell: "echo dump; echo note >&2", Env: []string{"PATH=" + os.Getenv("PATH")},
		StdoutTo: &file, Stdout: &so, Stderr: &se})
	if res.Err != nil || res.Output != "note" || file.String() != "dump" || so.String() != "dump" || se.String() != "note" {
		t.Fatalf("result %+v, file %q, stdout %q, stderr %q", res, file.String(), so.String(), se.String())
	}
}

// A command's output to a file is handed to it as it is (no pipe, no
// copy); other writers are copied through the pooled buffers.
func TestOutputWritersPooledExceptFiles(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if w := pooled(f); w != io.Writer(f) {
		t.Fatalf("a file became %T: exec would pipe and copy it", w)
	}
	var buf strings.Builder
	if _, ok := pooled(&buf).(pooledCopy); !ok {
		t.Fatalf("a buffer is not copied through the pool")
	}
	r := Run(context.Background(), Command{Argv: []string{"sh", "-c", "echo to-file"}, StdoutTo: f})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if b, _ := os.ReadFile(f.Name()); string(b) != "to-file\n" {
		t.Fatalf("file holds %q", b)
	}
}
