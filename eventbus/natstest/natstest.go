// Package natstest starts a real embedded NATS server for tests: random
// port, JetStream in t.TempDir(), shut down by t.Cleanup.
package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/embedded"
)

// Server starts an embedded JetStream server for the test.
func Server(t testing.TB) *server.Server {
	t.Helper()
	s, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatalf("start embedded NATS: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// Conn connects to s, closed by t.Cleanup.
func Conn(t testing.TB, s *server.Server) *nats.Conn {
	t.Helper()
	nc, err := eventbus.Connect(s.ClientURL(), t.Name())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Bus connects to s and provisions the streams.
func Bus(t testing.TB, s *server.Server, source string) *eventbus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := eventbus.NewBus(ctx, Conn(t, s), eventbus.Options{Source: source, Provision: true})
	if err != nil {
		t.Fatalf("bus: %v", err)
	}
	return b
}

// Eventually polls cond every 10ms until it holds or d passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
