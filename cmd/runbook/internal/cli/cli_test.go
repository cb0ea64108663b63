package cli_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Execute(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func writePlan(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "plan.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidate(t *testing.T) {
	t.Parallel()
	good, _ := filepath.Abs("../../../../examples/plans/good.yaml")
	code, out, _ := run(t, "validate", good)
	if code != 0 || !strings.Contains(out, "is valid") || !strings.Contains(out, "MEDIUM") {
		t.Fatalf("validate good.yaml: exit %d\n%s", code, out)
	}

	bad := writePlan(t, "change_request: {id: CR-1, title: t, type: enhancment, priority: low}\nrequester: {name: a}\ndeploy:\n  steps:\n    - name: x\n      comand: {argv: [\"true\"]}\n")
	code, out, errOut := run(t, "validate", bad)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	for _, want := range []string{bad + ":1:", "change_request.type", "enhancment", bad + ":6:", "comand"} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "is invalid: 2 error(s)") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("stderr should be one line naming the error count: %q", errOut)
	}
}

func TestUnreachableNATSIsOneLine(t *testing.T) {
	t.Parallel()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	code, _, errOut := run(t, "runs", "--nats-url", "nats://"+addr)
	if code != 1 || !strings.Contains(errOut, "cannot reach NATS at nats://"+addr) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestUnknownRunAndReport(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	url := s.ClientURL()

	code, _, errOut := run(t, "report", "NOPE-1", "--nats-url", url)
	if code != 2 || !strings.Contains(errOut, "no run NOPE-1") {
		t.Fatalf("unknown run: exit %d %q", code, errOut)
	}
	code, _, errOut = run(t, "watch", "bad subject!", "--nats-url", url)
	if code != 2 || !strings.Contains(errOut, "not subject-safe") {
		t.Fatalf("bad run id: exit %d %q", code, errOut)
	}

	ctx := context.Background()
	_, _ = bus.Publish(ctx, eventbus.New("R-1", &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-9", Title: "nine"}}))
	code, _, errOut = run(t, "report", "R-1", "--nats-url", url)
	if code != 4 || !strings.Contains(errOut, "no report yet") {
		t.Fatalf("no report yet: exit %d %q", code, errOut)
	}
	_, _ = bus.Publish(ctx, eventbus.New("R-1", &runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{Status: "SUCCESS", QcSummary: "QC LINES", ReportJson: `{"x":1}`}}))
	code, out, _ := run(t, "report", "R-1", "--nats-url", url)
	if code != 0 || strings.TrimSpace(out) != "QC LINES" {
		t.Fatalf("report: exit %d %q", code, out)
	}
	code, out, _ = run(t, "report", "R-1", "--json", "--nats-url", url)
	if code != 0 || strings.TrimSpace(out) != `{"x":1}` {
		t.Fatalf("report --json: exit %d %q", code, out)
	}
	code, out, _ = run(t, "runs", "--nats-url", url)
	if code != 0 || !strings.Contains(out, "R-1") || !strings.Contains(out, "CR-9") {
		t.Fatalf("runs: exit %d\n%s", code, out)
	}
	// watch of a finished run replays it and exits with its status.
	code, out, _ = run(t, "watch", "R-1", "--nats-url", url)
	if code != 0 || !strings.Contains(out, "QC LINES") {
		t.Fatalf("watch: exit %d\n%s", code, out)
	}
}

func TestServeRefusesTakenPort(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, _, errOut := run(t, "serve", "--nats-listen", l.Addr().String(), "--data-dir", t.TempDir(), "--http-listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errOut, "port is taken") || !strings.Contains(errOut, "--nats-listen") {
		t.Fatalf("exit %d %q", code, errOut)
	}
}

func TestNewRunID(t *testing.T) {
	id := cli.NewRunID(mustTime("2025-09-22T14:30:00Z"), 0)
	if id != "DEPLOY-20250922-143000" {
		t.Fatalf("%s", id)
	}
	if s := cli.NewRunID(mustTime("2025-09-22T14:30:00Z"), 1); !strings.HasPrefix(s, "DEPLOY-20250922-143000-") || eventbus.ValidateRunID(s) != nil {
		t.Fatalf("%s", s)
	}
}

func TestServeAgainstExternalNATS(t *testing.T) {
	t.Parallel()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := l.Addr().String()
	l.Close()
	code, _, errOut := run(t, "serve", "--nats-url", "nats://"+closedAddr, "--http-listen", "127.0.0.1:0", "--insecure-no-auth")
	if code != 1 || !strings.Contains(errOut, "cannot reach NATS") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("unreachable external NATS: exit %d %q", code, errOut)
	}

	// An authenticated external server; serve takes the services' and the
	// admin's seeds from --identity-dir.
	s := natstest.SecureServer(t)
	nc := s.ConnAs(t, "admin")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errBuf bytes.Buffer
	go func() {
		done <- cli.Execute(ctx, []string{"serve", "--nats-url", s.ClientURL(), "--identity-dir", s.Store.Dir, "--http-listen", "127.0.0.1:0", "--log-level", "error"}, &bytes.Buffer{}, &errBuf)
	}()
	// The services provision the streams on the external server and create their consumers.
	natstest.Eventually(t, 15*time.Second, "consumers on the external server", func() bool {
		js, _ := jetstream.New(nc)
		st, err := js.Stream(context.Background(), eventbus.AuditStream)
		if err != nil {
			return false
		}
		durables := map[string]bool{}
		for ci := range st.ListConsumers(context.Background()).Info() {
			durables[ci.Config.Durable] = true
		}
		// The reporter reads the stream with an ordered consumer, not a durable.
		for _, name := range []string{"preflight", "deployer", "monitor", "tester"} {
			if !durables[name] {
				return false
			}
		}
		return true
	})
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("serve exited %d: %s", code, errBuf.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop within 20s of its context ending")
	}
}
