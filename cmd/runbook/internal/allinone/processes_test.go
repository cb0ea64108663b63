package allinone_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
	"github.com/kis-core/runbook/eventbus/metricstest"
	"github.com/kis-core/runbook/eventbus/natstest"
)

// The five services as separate processes, built from their own main
// packages, against one NATS server that accepts only its keyring's
// identities — the documented shape for a cluster: the admin creates the
// streams, each service connects with its own seed (--creds) and reads the
// keyring (--keyring) — run the good plan to SUCCESS and stop cleanly on
// SIGTERM.
func TestServicesAsSeparateProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds five binaries")
	}
	root := repoRoot(t)
	bin, services := buildServices(t)

	s := natstest.SecureServer(t)
	admin := s.ConnAs(t, "admin")
	ctx := context.Background()
	js, _ := jetstream.New(admin)
	if err := eventbus.EnsureStreams(ctx, js, eventbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	var procs []*exec.Cmd
	metrics := map[string]string{} // service -> its /metrics
	for _, name := range services {
		addr := freeAddr(t)
		metrics[name] = "http://" + addr + "/metrics"
		cmd := exec.Command(filepath.Join(bin, name), "--nats-url", s.ClientURL(), "--metrics-listen", addr,
			"--creds", s.Store.SeedPath(name), "--keyring", s.Store.KeyringPath())
		cmd.Dir = root
		logf, _ := os.Create(filepath.Join(bin, name+".log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	}
	// The change comes from a requester of the keyring, signed.
	if _, err := s.Store.Create("alice", trust.Requester, ""); err != nil {
		t.Fatal(err)
	}
	s.Reload(t)
	alice, err := auth.Open(s.Store.SeedPath("alice"))
	if err != nil {
		t.Fatal(err)
	}
	bus, err := eventbus.NewBus(ctx, s.ConnAs(t, "alice"), eventbus.Options{Source: "cli/alice", Signer: alice.KP})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range services {
				b, _ := os.ReadFile(filepath.Join(bin, name+".log"))
				t.Logf("%s log:\n%s", name, b)
			}
		}
	})
	p := &pipeline{bus: bus}
	tg := startTarget(t)
	run := p.submit(t, examplePlan(t, "good.yaml", tg, shorten))
	rr := p.report(t, run, 90*time.Second)
	if rr.Status != "SUCCESS" {
		t.Fatalf("ended %s: %v", rr.Status, types(p.history(t, run)))
	}
	noDuplicateIDs(t, p.history(t, run))

	// Each binary's /metrics says which build it is and how far behind its
	// durable consumer is (the reporter: the notifier's, and the runs).
	for _, name := range services {
		got := metricstest.Scrape(t, metrics[name])
		if f := got.Family("runbook_build_info"); len(f) != 1 || !strings.Contains(fmt.Sprint(f), `goversion="go`) {
			t.Errorf("%s: runbook_build_info = %v, want one series of value 1 naming the build", name, f)
		} else {
			for _, v := range f {
				if v != 1 {
					t.Errorf("%s: runbook_build_info = %v", name, f)
				}
			}
		}
		consumer := name
		if name == "reporter" {
			consumer = "notifier"
			if v, ok := got.Value("runbook_runs_active", "status", "DEPLOYING"); !ok || v != 0 {
				t.Errorf("reporter: runbook_runs_active{status=DEPLOYING} = %v, %v; want 0 once the run ended", v, ok)
			}
		}
		// 0 once it has been given every event (the notifier may not yet
		// have report.ready).
		natstest.Eventually(t, 10*time.Second, name+": runbook_consumer_pending_messages{consumer="+consumer+"} 0", func() bool {
			v, ok := metricstest.Scrape(t, metrics[name]).Value("runbook_consumer_pending_messages", "consumer", consumer)
			return ok && v == 0
		})
	}

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
