package allinone_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
)

// The five services as separate processes, built from their own main
// packages, against one NATS server, run the good plan to SUCCESS and stop
// cleanly on SIGTERM.
func TestServicesAsSeparateProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds five binaries")
	}
	root := repoRoot(t)
	bin := t.TempDir()
	services := []string{"preflight", "deployer", "monitor", "tester", "reporter"}
	args := []string{"build", "-o", bin + string(filepath.Separator)}
	for _, s := range services {
		args = append(args, "./services/"+s+"/cmd/"+s)
	}
	build := exec.Command("go", args...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	s := natstest.Server(t)
	var procs []*exec.Cmd
	for _, name := range services {
		cmd := exec.Command(filepath.Join(bin, name), "--nats-url", s.ClientURL(), "--metrics-listen", "127.0.0.1:0")
		cmd.Dir = root
		logf, _ := os.Create(filepath.Join(bin, name+".log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	}
	nc := natstest.Conn(t, s)
	ctx := context.Background()
	var bus *eventbus.Bus
	natstest.Eventually(t, 20*time.Second, "streams provisioned by the services", func() bool {
		b, err := eventbus.NewBus(ctx, nc, eventbus.Options{Source: "e2e"})
		bus = b
		return err == nil
	})
	p := &pipeline{bus: bus}
	tg := startTarget(t)
	run := p.submit(t, examplePlan(t, "good.yaml", tg, shorten))
	rr := p.report(t, run, 90*time.Second)
	if rr.Status != "SUCCESS" {
		for _, name := range services {
			b, _ := os.ReadFile(filepath.Join(bin, name+".log"))
			t.Logf("%s log:\n%s", name, b)
		}
		t.Fatalf("ended %s: %v", rr.Status, types(p.history(t, run)))
	}
	noDuplicateIDs(t, p.history(t, run))

	for i, cmd := range procs {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s exited with %v after SIGTERM", services[i], err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("%s did not stop within 20s of SIGTERM", services[i])
		}
	}
}
