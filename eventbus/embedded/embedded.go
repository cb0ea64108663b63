// Package embedded runs the NATS server inside the runbook process: the
// all-in-one default that needs nothing installed.
package embedded

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options of the embedded server.
type Options struct {
	// Host and Port NATS clients connect to. Port -1 picks a free port.
	Host string
	Port int
	// StoreDir holds JetStream's files; the same dir after a restart gives
	// back the same runs.
	StoreDir string
	// NoSync keeps JetStream's default of fsyncing every 2 minutes instead
	// of on every write. Faster, and an acknowledged approval or rollback
	// decision can vanish on a power cut: only for benchmarks and tests.
	NoSync bool
	// Logs turns the server's own log lines on.
	Logs bool
	// Users are the nkey users the server accepts (eventbus/auth.Users);
	// anyone else, anonymous clients included, is refused.
	Users []*server.NkeyUser
	// InsecureNoAuth runs the server open to anonymous clients with every
	// permission: for experiments only. Without it, Users must not be empty.
	InsecureNoAuth bool
	// TLS, when set, makes the server require TLS from its clients.
	TLS *tls.Config
	// Cluster, when set, makes the server one node of a JetStream cluster
	// (streams then take Replicas up to the number of nodes).
	Cluster *Cluster
}

// Cluster is a node's part of a NATS cluster: its unique name, where it
// listens for the other nodes' routes, and the routes to them.
type Cluster struct {
	Name       string   // the cluster's name, the same on every node
	ServerName string   // this node's name, unique in the cluster
	Host       string   // route listener (default Options.Host)
	Port       int      // route listener port
	Routes     []string // nats-route://host:port of the other nodes (or all: a node skips itself)
}

// Start runs a NATS server with JetStream and waits until it accepts clients.
// A port already in use is one clear error, not a hang.
func Start(o Options) (*server.Server, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	opts, err := o.serverOptions()
	if err != nil {
		return nil, err
	}
	if o.Port > 0 {
		addr := net.JoinHostPort(o.Host, strconv.Itoa(o.Port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS cannot listen on %s: the port is taken (another NATS server? the machine's own runs on 4222); choose another with --nats-listen: %w", addr, err)
		}
		_ = l.Close()
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	if o.Logs {
		s.ConfigureLogger()
	}
	go s.Start()
	ready := 10 * time.Second
	if o.Cluster != nil {
		ready = 30 * time.Second // a node also waits for its routes and JetStream's meta group
	}
	if !s.ReadyForConnections(ready) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS on %s:%d did not become ready in %s (data dir %s)", o.Host, o.Port, ready, o.StoreDir)
	}
	return s, nil
}

func (o Options) serverOptions() (*server.Options, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.StoreDir == "" {
		return nil, errors.New("embedded NATS: a JetStream data directory is required")
	}
	if len(o.Users) == 0 && !o.InsecureNoAuth {
		return nil, errors.New("embedded NATS: no users to accept: authentication is required (give identities, or InsecureNoAuth for experiments)")
	}
	opts := &server.Options{
		ServerName:         "runbook-embedded",
		Host:               o.Host,
		Port:               o.Port,
		JetStream:          true,
		StoreDir:           o.StoreDir,
		NoSigs:             true,
		NoLog:              !o.Logs,
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: 256 << 20,
		Nkeys:              o.Users,
	}
	if c := o.Cluster; c != nil {
		opts.ServerName = c.ServerName
		opts.Cluster.Name = c.Name
		opts.Cluster.Host = c.Host
		if opts.Cluster.Host == "" {
			opts.Cluster.Host = o.Host
		}
		opts.Cluster.Port = c.Port
		opts.Routes = server.RoutesFromStr(strings.Join(c.Routes, ","))
	}
	if o.TLS != nil {
		opts.TLSConfig = o.TLS
		opts.TLS = true
		opts.TLSVerify = o.TLS.ClientAuth == tls.RequireAndVerifyClientCert
		opts.TLSTimeout = 2
	}
	if !o.NoSync {
		// sync_interval: always — every write is on disk before it is acknowledged.
		opts.SyncAlways = true
	}
	return opts, nil
}

// Reload gives a running server new users (a keyring changed): new keys
// may connect at once, the connections of removed or revoked keys are
// closed. o must be the Options it was started with, Users aside.
func Reload(s *server.Server, o Options) error {
	opts, err := o.serverOptions()
	if err != nil {
		return err
	}
	if o.Port <= 0 {
		// The port picked at start-up stays.
		opts.Port = s.Addr().(*net.TCPAddr).Port
	}
	if err := s.ReloadOptions(opts); err != nil {
		return fmt.Errorf("embedded NATS: reload users: %w", err)
	}
	return nil
}
