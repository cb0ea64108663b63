package allinone_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/eventbus/natstest"
)

// demoPassword is the demo estimator's test account (estimator.DemoPassword).
// The example plans' smoke login reads it from the tester's environment
// (${env:SMOKE_PASSWORD}): TestMain sets it for the in-process pipelines
// and the service processes the tests start, which inherit it.
const demoPassword = "test123"

func TestMain(m *testing.M) {
	if err := os.Setenv("SMOKE_PASSWORD", demoPassword); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// missing fails the test in CI (CI=true), where every tool the tests need
// is installed by .ci/run, and skips it loudly elsewhere.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED (not CI): " + msg)
}

// proc is a service binary run as its own process (to be killed with
// SIGKILL and started again); every start appends to the same log file.
type proc struct {
	t    testing.TB
	bin  string
	args []string
	log  *os.File
	mu   sync.Mutex
	cmd  *exec.Cmd
}

// startProc starts bin with args, its output appended to logPath; the
// process is killed when the test ends.
func startProc(t testing.TB, bin, logPath string, args ...string) *proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, bin: bin, args: args, log: f}
	p.start()
	t.Cleanup(func() { p.kill(); f.Close() })
	return p
}

func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd = cmd
}

// kill sends SIGKILL and waits for the process; a no-op once it exited.
func (p *proc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// restart kills the process (SIGKILL) and starts it again.
func (p *proc) restart() {
	p.t.Helper()
	p.kill()
	p.start()
}

// buildServices builds the five service binaries into one temp dir (one
// go build) and returns it with the services' names.
func buildServices(t testing.TB) (bin string, services []string) {
	t.Helper()
	bin = t.TempDir()
	services = []string{"preflight", "deployer", "monitor", "tester", "reporter"}
	args := []string{"build", "-o", bin + string(filepath.Separator)}
	for _, s := range services {
		args = append(args, "./services/"+s+"/cmd/"+s)
	}
	build := exec.Command("go", args...)
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin, services
}

// buildService builds one service binary into a temp dir.
func buildService(t testing.TB, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	build := exec.Command("go", "build", "-o", bin, "./services/"+name+"/cmd/"+name)
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	return bin
}

// serveWithout runs `runbook serve` against a fresh test NATS server with
// every service but the named one (the test runs that one as its own
// process) and returns the server; serve stops when the test ends.
func serveWithout(t testing.TB, service string) *server.Server {
	t.Helper()
	s := natstest.Server(t)
	ctx, cancel := context.WithCancel(context.Background())
	// An open test server: the process under test runs with --insecure-no-auth
	// (TestServicesAsSeparateProcesses covers the authenticated shape).
	srv, err := allinone.New(ctx, allinone.Options{NATSURL: s.ClientURL(), Without: []string{service}, InsecureNoAuth: true})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s
}
