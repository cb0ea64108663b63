// Package embedded runs the NATS server inside the runbook process: the
// all-in-one default that needs nothing installed.
package embedded

import (
	"errors"
	"fmt"
	"net"
	"strconv"
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
}

// Start runs a NATS server with JetStream and waits until it accepts clients.
// A port already in use is one clear error, not a hang.
func Start(o Options) (*server.Server, error) {
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if o.StoreDir == "" {
		return nil, errors.New("embedded NATS: a JetStream data directory is required")
	}
	if o.Port > 0 {
		addr := net.JoinHostPort(o.Host, strconv.Itoa(o.Port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS cannot listen on %s: the port is taken (another NATS server? the machine's own runs on 4222); choose another with --nats-listen: %w", addr, err)
		}
		_ = l.Close()
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
	}
	if !o.NoSync {
		// sync_interval: always — every write is on disk before it is acknowledged.
		opts.SyncAlways = true
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	if o.Logs {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded NATS on %s:%d did not become ready in 10s (data dir %s)", o.Host, o.Port, o.StoreDir)
	}
	return s, nil
}
