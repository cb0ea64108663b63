package checks

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

const (
	pass = runbookv1.CheckStatus_CHECK_STATUS_PASS
	warn = runbookv1.CheckStatus_CHECK_STATUS_WARN
	bad  = runbookv1.CheckStatus_CHECK_STATUS_FAIL
)

// requireService skips a test whose service (PostgreSQL, Redis) is not on
// this machine, loudly, and fails it under CI=true, where a missing service
// must not pass for a green build.
func requireService(t *testing.T, name, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		_ = conn.Close()
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not reachable at %s (%v) and CI=true: the %s checks cannot be tested", name, addr, err, name)
	}
	t.Skipf("!!!!! SKIPPED: %s is not reachable at %s (%v): the %s checks are NOT tested here (this would fail with CI=true) !!!!!", name, addr, err, name)
}

// silentListener accepts connections and never answers: the check must end
// at its timeout.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// closedPort is an address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func envOf(m map[string]string) Env {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// suffix is a random name part, so that concurrent runs do not share
// database objects.
func suffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// expect checks a result's status and that its message contains every
// fragment, and that no secret appears in any of its fields.
func expect(t *testing.T, res *runbookv1.CheckResult, status runbookv1.CheckStatus, secrets []string, fragments ...string) {
	t.Helper()
	t.Logf("%s %s: value %q, threshold %q, message %q, %d ms", res.Status, res.Kind, res.Value, res.Threshold, res.Message, res.DurationMs)
	if res.Status != status {
		t.Errorf("status %v, want %v (message %q)", res.Status, status, res.Message)
	}
	for _, f := range fragments {
		if !strings.Contains(res.Message, f) {
			t.Errorf("message %q does not contain %q", res.Message, f)
		}
	}
	for _, s := range secrets {
		for field, v := range map[string]string{"name": res.Name, "value": res.Value, "threshold": res.Threshold, "message": res.Message} {
			if strings.Contains(v, s) {
				t.Errorf("the secret %q leaked into the result's %s: %q", s, field, v)
			}
		}
	}
}
