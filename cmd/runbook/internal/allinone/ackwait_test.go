package allinone_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
)

// Every service binary honours --ack-wait: the durable consumer it creates
// (the reporter's notifier included) has the given AckWait, not the
// router's default.
func TestEveryServiceHonoursAckWait(t *testing.T) {
	if testing.Short() {
		t.Skip("builds five binaries")
	}
	root := repoRoot(t)
	bin, services := buildServices(t)
	s := natstest.Server(t)
	ctx := context.Background()
	js, err := jetstream.New(natstest.Conn(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if err := eventbus.EnsureStreams(ctx, js, eventbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	const ackWait = 47 * time.Second
	for _, name := range services {
		cmd := exec.Command(filepath.Join(bin, name), "--nats-url", s.ClientURL(), "--metrics-listen", "127.0.0.1:0",
			"--insecure-no-auth", "--ack-wait", ackWait.String())
		cmd.Dir = root
		logf, _ := os.Create(filepath.Join(bin, name+".log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range services {
				b, _ := os.ReadFile(filepath.Join(bin, name+".log"))
				t.Logf("%s log:\n%s", name, b)
			}
		}
	})
	for _, durable := range []string{"preflight", "deployer", "monitor", "tester", "notifier"} {
		var got time.Duration
		natstest.Eventually(t, 30*time.Second, "consumer "+durable+" created", func() bool {
			c, err := js.Consumer(ctx, eventbus.AuditStream, durable)
			if err != nil {
				return false
			}
			got = c.CachedInfo().Config.AckWait
			return true
		})
		if got != ackWait {
			t.Errorf("consumer %s has AckWait %s, want --ack-wait %s", durable, got, ackWait)
		}
	}
}
