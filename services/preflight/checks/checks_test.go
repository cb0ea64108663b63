package checks

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

func TestChecks(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"ok","db":{"state":"up"}}`))
		case "/slow":
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		default:
			http.Error(w, "nope", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()

	no := false
	env := func(k string) (string, bool) {
		if k == "SECRET_TOKEN" {
			return "s3cr3t-value", true
		}
		return "", false
	}
	r := &Runner{Env: env}
	cases := []struct {
		name   string
		check  plan.Check
		status runbookv1.CheckStatus
		msg    string
	}{
		{"http ok", plan.Check{HTTP: &plan.HTTPCheck{URL: srv.URL + "/health", ExpectStatus: 200, JSON: map[string]any{"status": "ok", "db.state": "up"}}}, runbookv1.CheckStatus_CHECK_STATUS_PASS, "REACHABLE"},
		{"http json mismatch", plan.Check{HTTP: &plan.HTTPCheck{URL: srv.URL + "/health", JSON: map[string]any{"db.state": "down"}}}, runbookv1.CheckStatus_CHECK_STATUS_FAIL, "db.state is up, want down"},
		{"http 500", plan.Check{HTTP: &plan.HTTPCheck{URL: srv.URL + "/x"}}, runbookv1.CheckStatus_CHECK_STATUS_FAIL, "HTTP 500"},
		{"http timeout", plan.Check{Timeout: plan.Duration{Duration: 100 * time.Millisecond}, HTTP: &plan.HTTPCheck{URL: srv.URL + "/slow"}}, runbookv1.CheckStatus_CHECK_STATUS_FAIL, "timed out after 100ms"},
		{"http non-blocking", plan.Check{Blocking: &no, HTTP: &plan.HTTPCheck{URL: srv.URL + "/x"}}, runbookv1.CheckStatus_CHECK_STATUS_WARN, "HTTP 500"},
		{"tcp ok", plan.Check{TCP: &plan.TCPCheck{Address: strings.TrimPrefix(srv.URL, "http://")}}, runbookv1.CheckStatus_CHECK_STATUS_PASS, "REACHABLE"},
		{"tcp closed", plan.Check{TCP: &plan.TCPCheck{Address: closedAddr}}, runbookv1.CheckStatus_CHECK_STATUS_FAIL, "UNREACHABLE"},
		{"env set", plan.Check{Env: &plan.EnvCheck{Required: []string{"SECRET_TOKEN"}}}, runbookv1.CheckStatus_CHECK_STATUS_PASS, "SET"},
		{"env missing", plan.Check{Env: &plan.EnvCheck{Required: []string{"SECRET_TOKEN", "JWT_SECRET"}}}, runbookv1.CheckStatus_CHECK_STATUS_FAIL, "NOT SET: JWT_SECRET"},
		{"command ok", plan.Check{Command: &plan.Command{Argv: []string{"true"}}}, runbookv1.CheckStatus_CHECK_STATUS_PASS, "ok"},
		{"command exit 1", plan.Check{Command: &plan.Command{Argv: []string{"sh", "-c", "echo broken >&2; exit 3"}}}, runbookv1.CheckStatus_CHECK_STATUS_FAIL, "exited 3, want 0: broken"},
		{"command missing", plan.Check{Command: &plan.Command{Argv: []string{"/no/such/binary"}}}, runbookv1.CheckStatus_CHECK_STATUS_FAIL, "no such file"},
		{"file missing", plan.Check{File: &plan.FileCheck{Path: "/no/such/file"}}, runbookv1.CheckStatus_CHECK_STATUS_FAIL, "no such file"},
		{"file ok", plan.Check{File: &plan.FileCheck{Path: "checks.go"}}, runbookv1.CheckStatus_CHECK_STATUS_PASS, "readable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			res := r.Run(context.Background(), 0, c.check)
			if res.Status != c.status || !strings.Contains(res.Message, c.msg) {
				t.Fatalf("status %v message %q; want %v containing %q", res.Status, res.Message, c.status, c.msg)
			}
			if strings.Contains(res.Value+res.Message, "s3cr3t") {
				t.Fatalf("a secret's value leaked into the result: %+v", res)
			}
		})
	}
}

func TestRunAllIsConcurrent(t *testing.T) {
	t.Parallel()
	cs := make([]plan.Check, 5)
	for i := range cs {
		cs[i] = plan.Check{Command: &plan.Command{Argv: []string{"sleep", "0.3"}}}
	}
	start := time.Now()
	res := (&Runner{}).RunAll(context.Background(), cs)
	if d := time.Since(start); d > 1200*time.Millisecond {
		t.Fatalf("5 checks of 300 ms took %s: not concurrent", d)
	}
	for _, r := range res {
		if r.Status != runbookv1.CheckStatus_CHECK_STATUS_PASS {
			t.Fatalf("%+v", r)
		}
	}
}

func TestFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(dir, "secret")
	if err := os.WriteFile(unreadable, []byte("x"), 0o000); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		status     runbookv1.CheckStatus
		value, msg string
	}{
		{"regular file", "checks.go", pass, "file, ", "exists and is readable"},
		{"empty file", empty, pass, "file, 0 bytes", "exists and is readable"},
		{"directory", dir, pass, "directory", "exists and is readable (a directory: its entries can be listed)"},
		// A named pipe is not opened: that would wait for a writer.
		{"named pipe", fifo, pass, "named pipe", "exists and is readable (named pipe, not read)"},
		{"missing", filepath.Join(dir, "nope"), bad, "", "/nope does not exist: no such file or directory"},
		{"below a file", filepath.Join(empty, "x"), bad, "", "/empty/x cannot be reached: not a directory"},
		// Opening /proc/self/mem works; reading its first byte does not.
		{"opens but cannot be read", "/proc/self/mem", bad, "file, 0 bytes", "/proc/self/mem exists but cannot be read: input/output error"},
	}
	if os.Geteuid() != 0 { // root reads a mode 000 file
		cases = append(cases, struct {
			name, path string
			status     runbookv1.CheckStatus
			value, msg string
		}{"no permission", unreadable, bad, "file, 1 bytes", "exists but cannot be opened: permission denied"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			res := (&Runner{}).Run(context.Background(), 0, plan.Check{File: &plan.FileCheck{Path: c.path}})
			expect(t, res, c.status, nil, c.msg)
			if !strings.Contains(res.Value, c.value) {
				t.Errorf("value %q does not contain %q", res.Value, c.value)
			}
		})
	}
}

// TestEveryKindIsImplemented sets each kind field of plan.Check in turn
// (found by reflection, so that a new kind cannot be forgotten) and runs it:
// none may answer that it sets no kind.
func TestEveryKindIsImplemented(t *testing.T) {
	t.Parallel()
	ct := reflect.TypeOf(plan.Check{})
	n := 0
	for i := range ct.NumField() {
		f := ct.Field(i)
		if f.Type.Kind() != reflect.Pointer || f.Type.Elem().Kind() != reflect.Struct {
			continue
		}
		n++
		var c plan.Check
		v := reflect.ValueOf(&c).Elem().Field(i)
		v.Set(reflect.New(f.Type.Elem()))
		c.Timeout = plan.Duration{Duration: 200 * time.Millisecond}
		c.Blocking = new(false)
		res := (&Runner{Proc: t.TempDir(), CPUSample: time.Millisecond}).Run(context.Background(), 0, c)
		if res.Kind == "" || strings.Contains(res.Message, "sets no kind") || strings.Contains(res.Message, "not supported") {
			t.Errorf("%s: kind %q, message %q", f.Name, res.Kind, res.Message)
		}
	}
	if n != 9 {
		t.Errorf("%d kinds in plan.Check, this test knew 9: check that each new one is run", n)
	}
	res := (&Runner{}).Run(context.Background(), 0, plan.Check{})
	expect(t, res, bad, nil, "the check sets no kind")
}
