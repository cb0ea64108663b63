package natstest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus/auth"
	"github.com/kis-core/runbook/eventbus/embedded"
)

// Cluster is n embedded JetStream servers on loopback routed into one
// cluster, open to anonymous clients (like Server). Nodes keep their ports
// and store dirs across Stop/Start, so clients given URLs() reconnect to a
// restarted node and it catches its streams up from the others.
type Cluster struct {
	t     testing.TB
	mu    sync.Mutex
	nodes []*server.Server // nil while stopped
	opts  []embedded.Options
}

// NewCluster starts an n-node cluster and waits until JetStream has a
// meta leader.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return newCluster(t, n, nil)
}

// SecureCluster is an authenticated cluster and its identity store (admin
// and the five services made, like SecureServer).
type SecureCluster struct {
	*Cluster
	Store auth.Store
}

// NewSecureCluster starts an n-node cluster that accepts only the store's
// identities: serve's, and a requester for each name of requesters (made
// before the nodes start: reloading a clustered server's users races in
// nats-server's own route code, so tests add identities up front).
func NewSecureCluster(t testing.TB, n int, requesters ...string) *SecureCluster {
	t.Helper()
	st, _ := serveIdentities(t)
	for _, name := range requesters {
		if _, err := st.Create(name, trust.Requester, ""); err != nil {
			t.Fatalf("identity %s: %v", name, err)
		}
	}
	kr, err := st.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	return &SecureCluster{Cluster: newCluster(t, n, auth.Users(kr)), Store: st}
}

// ConnAs connects to the cluster as identity name of the store.
func (c *SecureCluster) ConnAs(t testing.TB, name string) *nats.Conn {
	t.Helper()
	id, err := auth.Open(c.Store.SeedPath(name))
	if err != nil {
		t.Fatal(err)
	}
	return c.connect(t, name, id.Options()...)
}

// Conn connects to an open cluster (any node, reconnecting to the others
// for as long as the test runs) once JetStream answers there.
func (c *Cluster) Conn(t testing.TB) *nats.Conn {
	t.Helper()
	nc := c.connect(t, "test")
	WaitReady(t, nc)
	return nc
}

func (c *Cluster) connect(t testing.TB, who string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(c.URLs(), append(opts, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))...)
	if err != nil {
		t.Fatalf("connect as %s: %v", who, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// NewClusterWith starts an n-node cluster as NewCluster does, with each
// node's options passed through tweak first (e.g. node 1 on the data
// directory of a former single server).
func NewClusterWith(t testing.TB, n int, tweak func(i int, o *embedded.Options)) *Cluster {
	t.Helper()
	return newClusterWith(t, n, nil, tweak)
}

func newCluster(t testing.TB, n int, users []*server.NkeyUser) *Cluster {
	t.Helper()
	return newClusterWith(t, n, users, nil)
}

func newClusterWith(t testing.TB, n int, users []*server.NkeyUser, tweak func(int, *embedded.Options)) *Cluster {
	t.Helper()
	clientPorts, routePorts := freePorts(t, n), freePorts(t, n)
	routes := make([]string, n)
	for i := range n {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", routePorts[i])
	}
	c := &Cluster{t: t, nodes: make([]*server.Server, n), opts: make([]embedded.Options, n)}
	for i := range n {
		c.opts[i] = embedded.Options{
			// Every write fsynced (runbook serve's default): a node stopped
			// at any moment keeps what it acknowledged.
			Port: clientPorts[i], StoreDir: t.TempDir(), InsecureNoAuth: users == nil, Users: users,
			Cluster: &embedded.Cluster{Name: "runbook-test", ServerName: fmt.Sprintf("n%d", i+1), Port: routePorts[i], Routes: routes},
		}
		if tweak != nil {
			tweak(i, &c.opts[i])
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { c.nodes[i], errs[i] = embedded.Start(c.opts[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			c.Shutdown()
			t.Fatalf("start cluster node %d: %v", i+1, err)
		}
	}
	t.Cleanup(c.Shutdown)
	c.WaitReady(t)
	return c
}

// WaitReady waits until every running node sees a JetStream meta leader
// and all its peers current: streams can then be placed on any 3 nodes.
func (c *Cluster) WaitReady(t testing.TB) {
	t.Helper()
	Eventually(t, 30*time.Second, "every node of the cluster current in JetStream's meta group", c.current)
}

// WaitCurrent is WaitReady for goroutines other than the test's: it
// reports whether the cluster became current within d.
func (c *Cluster) WaitCurrent(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if c.current() {
			return true
		}
		time.Sleep(20 * time.Millisecond) // polling the servers' state, not synchronising with the test
	}
	return false
}

// current reports whether the meta leader sees every running node current.
func (c *Cluster) current() bool {
	running := 0
	for i := range c.opts {
		if c.Node(i) != nil {
			running++
		}
	}
	// The meta leader knows its peers: every running node current.
	for i := range c.opts {
		s := c.Node(i)
		if s == nil {
			continue
		}
		jsz, err := s.Jsz(nil)
		if err != nil || jsz.Meta == nil || jsz.Meta.Leader != s.Name() {
			continue
		}
		current := 1 // itself
		for _, p := range jsz.Meta.Replicas {
			if p.Current && !p.Offline {
				current++
			}
		}
		return current >= running
	}
	return false
}

// URLs are the client URLs of every node, comma-separated (nats.Connect's
// form): a client fails over between them.
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.opts))
	for i, o := range c.opts {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", o.Port)
	}
	return strings.Join(urls, ",")
}

// Node is node i (nil while stopped).
func (c *Cluster) Node(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Size is the number of nodes.
func (c *Cluster) Size() int { return len(c.opts) }

// Stop shuts node i down at once, as a crash would (its store stays).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Start restarts a stopped node i on its ports and store.
func (c *Cluster) Start(t testing.TB, i int) {
	t.Helper()
	if err := c.Restart(i); err != nil {
		t.Fatal(err)
	}
}

// Restart is Start for goroutines other than the test's (a chaos loop):
// it returns the error.
func (c *Cluster) Restart(i int) error {
	s, err := embedded.Start(c.opts[i])
	if err != nil {
		return fmt.Errorf("restart cluster node %d: %w", i+1, err)
	}
	c.mu.Lock()
	c.nodes[i] = s
	c.mu.Unlock()
	return nil
}

// Shutdown stops every node.
func (c *Cluster) Shutdown() {
	for i := range c.nodes {
		c.Stop(i)
	}
}

// StreamLeader is the index of the node leading stream (-1 when none
// knows a leader yet).
func (c *Cluster) StreamLeader(stream string) int {
	for i := range c.nodes {
		s := c.Node(i)
		if s == nil {
			continue
		}
		if s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// WaitReady waits until nc reaches JetStream through the cluster (a meta
// leader is elected).
func WaitReady(t testing.TB, nc *nats.Conn) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, 30*time.Second, "the cluster's JetStream meta leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err == nil
	})
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	out := make([]int, n)
	ls := make([]net.Listener, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls[i], out[i] = l, l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return out
}
