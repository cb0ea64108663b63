package checks

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// The machine's PostgreSQL trusts local connections, so it cannot refuse a
// password. This peer speaks the start of the PostgreSQL protocol as a
// server with password authentication does: it asks for the password,
// reads it, and refuses it with SQLSTATE 28P01 — what the check must turn
// into a clear failure that never shows the password.
func passwordRefusingServer(t *testing.T) (addr string, gotPassword <-chan string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got := make(chan string, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(conn)
		var n int32
		if binary.Read(r, binary.BigEndian, &n) != nil { // startup message: length, then body
			return
		}
		if _, err := io.CopyN(io.Discard, r, int64(n-4)); err != nil {
			return
		}
		// AuthenticationCleartextPassword.
		_, _ = conn.Write([]byte{'R', 0, 0, 0, 8, 0, 0, 0, 3})
		typ, _ := r.ReadByte()
		if typ != 'p' || binary.Read(r, binary.BigEndian, &n) != nil {
			return
		}
		pw := make([]byte, n-4)
		if _, err := io.ReadFull(r, pw); err != nil {
			return
		}
		got <- strings.TrimRight(string(pw), "\x00")
		fields := "SFATAL\x00VFATAL\x00C28P01\x00Mpassword authentication failed for user \"app\"\x00\x00"
		msg := []byte{'E', 0, 0, 0, 0}
		binary.BigEndian.PutUint32(msg[1:], uint32(4+len(fields)))
		_, _ = conn.Write(append(msg, fields...))
	}()
	return l.Addr().String(), got
}

func TestPostgresWrongPassword(t *testing.T) {
	t.Parallel()
	addr, gotPassword := passwordRefusingServer(t)
	secret := "Wrong-Pw-4f2a"
	r := &Runner{Env: envOf(map[string]string{"APP_DSN": "postgres://app:" + secret + "@" + addr + "/orders?sslmode=disable"})}
	res := r.Run(context.Background(), 0, plan.Check{Postgres: &plan.PostgresCheck{DSNEnv: "APP_DSN"}})
	if res.Status != runbookv1.CheckStatus_CHECK_STATUS_FAIL {
		t.Fatalf("status %v: %s", res.Status, res.Message)
	}
	for _, want := range []string{"PostgreSQL: CONNECTION FAILED", "password authentication failed", "28P01", addr + "/orders"} {
		if !strings.Contains(res.Message, want) {
			t.Errorf("message %q lacks %q", res.Message, want)
		}
	}
	select {
	case pw := <-gotPassword:
		if pw != secret {
			t.Fatalf("the server got password %q", pw)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the check never sent the password")
	}
	for _, f := range []string{res.Value, res.Message, res.Threshold, res.Name} {
		if strings.Contains(f, secret) {
			t.Fatalf("the password leaked into the result: %+v", res)
		}
	}
}
