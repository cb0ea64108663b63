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
	"github.com/kis-core/runbook/eventbus/auth"
	"github.com/kis-core/runbook/eventbus/embedded"
)

// Server starts an embedded JetStream server for the test, open to
// anonymous clients (unit tests of the plumbing; SecureServer is the
// default's shape).
func Server(t testing.TB) *server.Server {
	t.Helper()
	s, err := embedded.Start(embedded.Options{Port: -1, StoreDir: t.TempDir(), NoSync: true, InsecureNoAuth: true})
	if err != nil {
		t.Fatalf("start embedded NATS: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// Secure is an authenticated embedded server and its identity store.
type Secure struct {
	*server.Server
	Store auth.Store
	opts  embedded.Options
}

// serveIdentities makes an identity store with admin and the five
// services (as runbook serve does) and the server users of its keyring.
func serveIdentities(t testing.TB) (auth.Store, []*server.NkeyUser) {
	t.Helper()
	st := auth.Store{Dir: t.TempDir()}
	if err := st.Ensure(auth.ServeIdentities()); err != nil {
		t.Fatalf("identities: %v", err)
	}
	kr, err := st.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	return st, auth.Users(kr)
}

// SecureServer starts an embedded JetStream server that accepts only the
// keyring's identities, with an admin and the five services made.
func SecureServer(t testing.TB) *Secure {
	t.Helper()
	st, users := serveIdentities(t)
	o := embedded.Options{Port: -1, StoreDir: t.TempDir(), NoSync: true, Users: users}
	s, err := embedded.Start(o)
	if err != nil {
		t.Fatalf("start embedded NATS: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return &Secure{Server: s, Store: st, opts: o}
}

// Reload makes the server accept the store's keyring as it is now.
func (s *Secure) Reload(t testing.TB) {
	t.Helper()
	kr, err := s.Store.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	o := s.opts
	o.Users = auth.Users(kr)
	if err := embedded.Reload(s.Server, o); err != nil {
		t.Fatal(err)
	}
}

// ConnAs connects to s as identity name of s.Store, closed by t.Cleanup.
func (s *Secure) ConnAs(t testing.TB, name string) *nats.Conn {
	t.Helper()
	id, err := auth.Open(s.Store.SeedPath(name))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := eventbus.Connect(s.ClientURL(), t.Name()+"-"+name, id.Options()...)
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	return nc
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
