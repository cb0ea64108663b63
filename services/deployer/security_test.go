package deployer_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A secret from an env var, printed by a failing step plain, in base64 and
// inside JSON, never appears in the stream (any event of the run) or in the
// deployer's logs.
func TestSecretNeverInStreamOrLogs(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	h := startLogged(t, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	secret := "s3cr3t-Token-9f8e7d"
	b64 := base64.StdEncoding.EncodeToString([]byte(secret))
	script := fmt.Sprintf(`echo "token=$API_TOKEN"; echo %s; printf '{"auth":"%%s"}\n' "$API_TOKEN" >&2; echo "failed with $API_TOKEN" >&2; exit 3`, b64)
	p := planWith(h.log, fmt.Sprintf(`    - name: leaky
      command:
        argv: [sh, -c, %q]
        env: {API_TOKEN: %q}
`, script, secret), step("undo", ""))
	h.publish(t, changeRequested("SEC1", p), preflightPassed("SEC1"))
	h.waitFor(t, "SEC1", "rollback.done")
	hist, err := h.bus.RunHistory(context.Background(), "SEC1")
	if err != nil {
		t.Fatal(err)
	}
	var stream strings.Builder
	for _, e := range hist {
		if e.Event.GetType() == "change.requested" {
			continue // the plan text names the value: it is the operator's own input
		}
		b, _ := protojson.Marshal(e.Event)
		stream.Write(b)
	}
	for name, s := range map[string]string{"stream": stream.String(), "logs": logs.String()} {
		for _, form := range []string{secret, b64} {
			if strings.Contains(s, form) {
				t.Errorf("the secret (%q) appears in the %s", form, name)
			}
		}
	}
	if !strings.Contains(stream.String(), "[REDACTED:API_TOKEN]") {
		t.Errorf("no redaction marker in the stream: the step's output was not checked")
	}
}

// A failed health gate fails the deploy and triggers the rollback.
func TestFailedHealthGateRollsBack(t *testing.T) {
	t.Parallel()
	h := start(t)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	p := planWith(h.log, step("one", ""), step("undo", "")) + fmt.Sprintf(`  health:
    - {url: "http://%s/health", attempts: 2, interval: 10ms, initial_delay: 0s, timeout: 200ms}
`, addr)
	h.publish(t, changeRequested("HG1", p), preflightPassed("HG1"))
	h.waitFor(t, "HG1", "rollback.done")
	if got := strings.Join(h.ran(t), ","); got != "one,undo" {
		t.Fatalf("ran %s", got)
	}
	f, _ := h.bus.LastEvent(context.Background(), "HG1", "deploy.failed")
	if f == nil || !strings.Contains(f.Event.GetDeployFailed().GetError(), "UNHEALTHY after 2 attempts") {
		t.Fatalf("deploy.failed: %+v", f)
	}
	rr, _ := h.bus.LastEvent(context.Background(), "HG1", "rollback.requested")
	if rr == nil || rr.Event.GetRollbackRequested().GetRequestedBy() != "deployer" {
		t.Fatalf("rollback.requested: %+v", rr)
	}
}
