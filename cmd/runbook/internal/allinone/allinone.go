// Package allinone is `runbook serve`: an embedded NATS server (or an
// external one) and the five services in one process, with /metrics and
// /healthz. Tests start it in-process.
package allinone

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
	"github.com/kis-core/runbook/eventbus/embedded"
	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/deployer"
	"github.com/kis-core/runbook/services/monitor"
	"github.com/kis-core/runbook/services/monitor/source"
	"github.com/kis-core/runbook/services/preflight"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/api"
	"github.com/kis-core/runbook/services/reporter/notify"
	"github.com/kis-core/runbook/services/reporter/pgstore"
	"github.com/kis-core/runbook/services/tester"
)

// Options of `runbook serve`.
type Options struct {
	// NATSURL uses an external server or cluster; empty runs the embedded one.
	NATSURL string
	// DataDir holds the embedded server's JetStream files.
	DataDir string
	// NATSListen is where the embedded server accepts NATS clients
	// ("127.0.0.1:4222"; port 0 or -1 picks a free one).
	NATSListen string
	// HTTPListen serves /metrics, /healthz, and with the reporter the read
	// API and dashboard (package services/reporter/api) at / ("" to not serve).
	HTTPListen string
	// NoSync turns off fsync-per-write on the embedded server (benchmarks).
	NoSync bool
	// Replicas of the streams when they are created (3 in a cluster).
	Replicas int
	// Instance names this process in the source of every event its
	// services publish ("<service>/<instance>", eventbus.SourceOf); ""
	// is eventbus.DefaultInstance, host:pid.
	Instance string
	// ReportsDir receives <run_id>-report.json for every report the
	// reporter publishes (see reporter.Options.ReportsDir); "" writes none.
	ReportsDir string
	// DatabaseURL keeps the reporter's read model in PostgreSQL (runs,
	// events, reports); empty keeps it in memory.
	DatabaseURL string
	// Notify configures the notifier that runs with the reporter (the
	// server's own destinations, Getenv for their secrets, retries); the
	// plan's report.notify adds per-run destinations.
	Notify notify.Options
	// ShutdownTimeout bounds the shutdown (default 15s).
	ShutdownTimeout time.Duration
	// LoadSummaryDir receives each load test's k6-shaped summary as
	// <dir>/<run>-k6-summary.json ("" for none; the event carries it anyway).
	LoadSummaryDir string

	Log      *slog.Logger
	Registry *prometheus.Registry

	// Per-service consumer options (tests inject fault hooks here).
	Preflight, Deployer, Monitor, Tester eventbus.ConsumerOptions
	// DeployerStepFault, for tests only: see deployer.Options.StepFault.
	DeployerStepFault func(run, list string, index int) error
	// Without names services not to run here (tests run them elsewhere,
	// e.g. the deployer as a separate process).
	Without []string

	// IdentityDir holds the identities (keyring.json and the seeds of
	// admin and the five services, made on first start); default
	// <DataDir>/identities. With an external NATS it must hold the
	// services' seeds, and the server must know their keys.
	IdentityDir string
	// InsecureNoAuth runs without authentication: anonymous clients get
	// every permission and unsigned decisions are trusted. Experiments only;
	// every start says so.
	InsecureNoAuth bool
	// HTTPAllowedHosts are the names the read API answers to beyond the
	// listen host and loopback (DNS rebinding: other Host headers get 421).
	HTTPAllowedHosts []string
	// TLS: with a certificate, the embedded NATS server requires TLS from
	// every client and the HTTP listener serves HTTPS; with an external NATS
	// the CA verifies its certificate.
	TLS auth.TLSFiles
	// KeyringPoll is how often the keyring file is checked for new or
	// revoked identities (default 1s).
	KeyringPoll time.Duration
}

// Server is a running all-in-one runbook.
type Server struct {
	o        Options
	log      *slog.Logger
	ns       *server.Server
	nsOpts   embedded.Options
	nc       *nats.Conn
	conns    []*nats.Conn
	ids      auth.Store
	keyring  *auth.KeyringFile
	url      string
	httpAddr string
	httpSrv  *http.Server
	services map[string]svcmain.Service
	buses    []*eventbus.Bus // the services' own, one per identity
	store    *pgstore.Store
	Reporter *reporter.Service
}

// New starts NATS (embedded or connected) and builds the services; Run runs them.
func New(ctx context.Context, o Options) (*Server, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = eventbus.NewRegistry() // Go, process, runbook_build_info
	} else {
		eventbus.RegisterBuildInfo(o.Registry)
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 15 * time.Second
	}
	s := &Server{o: o, log: o.Log, url: o.NATSURL}
	var users []*server.NkeyUser
	if o.InsecureNoAuth {
		o.Log.Warn("INSECURE: --insecure-no-auth: anyone who reaches NATS may run commands, approve and erase the audit; unsigned decisions are trusted. Never run production this way")
	} else {
		dir := o.IdentityDir
		if dir == "" {
			if o.DataDir == "" {
				return nil, errors.New("--data-dir (or --identity-dir) is required: the identities live there")
			}
			dir = filepath.Join(o.DataDir, "identities")
		}
		s.ids = auth.Store{Dir: dir}
		if s.url == "" {
			// First start: admin and one identity per service.
			if err := s.ids.Ensure(auth.ServeIdentities()); err != nil {
				return nil, err
			}
		}
		s.keyring = auth.NewKeyringFile(s.ids.KeyringPath())
		kr, err := s.keyring.Keyring()
		if err != nil {
			return nil, err
		}
		users = auth.Users(kr)
	}
	if s.url == "" {
		host, port, err := splitListen(o.NATSListen)
		if err != nil {
			return nil, err
		}
		if o.DataDir == "" {
			return nil, errors.New("--data-dir is required for the embedded NATS server")
		}
		if err := os.MkdirAll(o.DataDir, 0o750); err != nil {
			return nil, fmt.Errorf("data dir %s: %w", o.DataDir, err)
		}
		abs, _ := filepath.Abs(o.DataDir)
		s.nsOpts = embedded.Options{Host: host, Port: port, StoreDir: abs, NoSync: o.NoSync, Users: users, InsecureNoAuth: o.InsecureNoAuth}
		if o.TLS.Enabled() {
			if s.nsOpts.TLS, err = o.TLS.ServerConfig(); err != nil {
				return nil, err
			}
			if o.TLS.CA == "" {
				o.TLS.CA = o.TLS.Cert // serve's own connections trust its certificate
				s.o.TLS.CA = o.TLS.Cert
			}
		}
		ns, err := embedded.Start(s.nsOpts)
		if err != nil {
			return nil, err
		}
		s.ns = ns
		s.url = ns.ClientURL()
	}
	// The admin creates the streams; each service then connects as itself.
	admin, err := s.connect("admin", "runbook-serve-admin")
	if err != nil {
		s.shutdownNATS()
		return nil, err
	}
	pctx, pcancel := context.WithTimeout(ctx, 15*time.Second)
	err = eventbus.EnsureStreams(pctx, jetstreamOf(admin), eventbus.StreamOptions{Replicas: o.Replicas})
	pcancel()
	admin.Close()
	if err != nil {
		s.shutdownNATS()
		return nil, fmt.Errorf("provision streams as admin: %w", err)
	}
	m := eventbus.NewMetrics(o.Registry)
	buses := map[string]*eventbus.Bus{}
	bus := func(name string) (*eventbus.Bus, error) {
		identity := name
		if name == "api" {
			identity = "reporter"
		}
		if b, ok := buses[identity]; ok && name == "api" {
			return b, nil
		}
		nc, err := s.connect(identity, "runbook-"+name)
		if err != nil {
			return nil, err
		}
		var signer nkeys.KeyPair
		if !o.InsecureNoAuth {
			id, err := auth.Open(s.ids.SeedPath(identity))
			if err != nil {
				return nil, err
			}
			signer = id.KP
		}
		bctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		b, err := eventbus.NewBus(bctx, nc, eventbus.Options{Source: eventbus.SourceOf(name, o.Instance), Signer: signer})
		if err == nil {
			buses[identity] = b
			s.buses = append(s.buses, b)
		}
		return b, err
	}
	if s.keyring != nil {
		// Every consumer checks who published what it handles.
		for _, c := range []*eventbus.ConsumerOptions{&o.Preflight, &o.Deployer, &o.Monitor, &o.Tester, &o.Notify.Consumer} {
			c.Keyring = s.keyring
		}
	}
	s.services = map[string]svcmain.Service{}
	for _, name := range []string{"preflight", "deployer", "monitor", "tester", "reporter"} {
		if slices.Contains(o.Without, name) {
			continue
		}
		b, err := bus(name)
		if err != nil {
			s.close()
			return nil, err
		}
		log := o.Log.With("service", name)
		switch name {
		case "preflight":
			po := preflight.Options{Consumer: o.Preflight}
			if s.keyring != nil {
				po.Keyring = s.keyring
			}
			s.services[name] = preflight.New(b, po, log, m, o.Registry)
		case "deployer":
			do := deployer.Options{Consumer: o.Deployer, StepFault: o.DeployerStepFault}
			if o.DataDir != "" {
				do.StateDir = filepath.Join(o.DataDir, "deployer") // its steps' pid files, swept at start
			}
			if s.keyring != nil {
				do.Keyring = s.keyring
			}
			s.services[name] = deployer.New(b, do, log, m, o.Registry)
		case "monitor":
			s.services[name] = monitor.New(b, monitor.Options{Consumer: o.Monitor, Sources: source.Config{Getenv: os.LookupEnv}}, log, m, o.Registry)
		case "tester":
			s.services[name] = tester.New(b, tester.Options{Consumer: o.Tester, SummaryDir: o.LoadSummaryDir}, log, m, o.Registry)
		case "reporter":
			ro := reporter.Options{ReportsDir: o.ReportsDir}
			if o.DatabaseURL != "" {
				st, err := pgstore.Open(ctx, o.DatabaseURL)
				if err != nil {
					s.close()
					return nil, err
				}
				s.store, ro.Model = st, st
			}
			s.Reporter = reporter.New(b, ro, log, m, o.Registry)
			s.services[name] = s.Reporter
			if !slices.Contains(o.Without, "notifier") {
				s.services["notifier"] = notify.New(b, o.Notify, log, m, o.Registry)
			}
		}
	}
	if o.HTTPListen != "" {
		var extra []http.Handler
		// One handler at "/": the monitor's Alertmanager receiver at its
		// own path, the read API and dashboard at every other.
		app := http.NewServeMux()
		extra = append(extra, app)
		if mon, ok := s.services["monitor"].(*monitor.Service); ok {
			app.Handle(monitor.AlertmanagerPath, mon.Handler())
		}
		if s.Reporter != nil {
			// The read API, live stream and dashboard; its hub runs
			// (and closes its SSE clients) with the services.
			b, err := bus("api")
			if err != nil {
				s.close()
				return nil, err
			}
			ao := api.Options{Model: s.Reporter.Model(), Bus: b, Log: o.Log.With("component", "api"),
				ListenAddr: o.HTTPListen, RequireToken: !api.IsLoopback(o.HTTPListen), AllowedHosts: o.HTTPAllowedHosts, AllowedHostsFlag: "--http-allowed-host"}
			if s.keyring != nil {
				// Bearer tokens of the keyring's identities (viewers and up),
				// and the keys their dashboard decisions are verified with.
				ao.Authorize, ao.Keyring = s.keyring.Authorize, s.keyring
			}
			a := api.New(ao)
			s.services["api"] = a
			app.Handle("/", a.Handler())
		}
		var httpTLS *tls.Config
		if o.TLS.Enabled() {
			if httpTLS, err = o.TLS.ServerConfig(); err != nil {
				s.close()
				return nil, err
			}
		}
		srv, addr, err := svcmain.ServeMetrics(o.HTTPListen, httpTLS, o.Registry, s.healthy, extra...)
		if err != nil {
			s.close()
			return nil, err
		}
		s.httpSrv, s.httpAddr = srv, addr
	}
	return s, nil
}

// connect opens a connection as identity (ignored without auth), closed
// at shutdown.
func (s *Server) connect(identity, name string) (*nats.Conn, error) {
	var opts []nats.Option
	if !s.o.InsecureNoAuth {
		id, err := auth.Open(s.ids.SeedPath(identity))
		if err != nil {
			return nil, err
		}
		opts = id.Options()
	}
	if s.o.TLS.CA != "" {
		topts, err := auth.ClientOptions(s.o.TLS.CA)
		if err != nil {
			return nil, err
		}
		opts = append(opts, topts...)
	}
	if s.ns != nil {
		// The embedded server is in this process: its services connect
		// in-process (a pipe, no sockets), authenticated (and with TLS,
		// encrypted) as over TCP. Clients outside still use s.url.
		opts = append(opts, nats.InProcessServer(s.ns))
	}
	nc, err := eventbus.Connect(s.url, name, opts...)
	if err != nil {
		return nil, err
	}
	if identity != "admin" {
		s.conns = append(s.conns, nc)
	}
	return nc, nil
}

// Creds is the seed file of identity name (admin, preflight, ...): what a
// client passes as --creds. "" without authentication.
func (s *Server) Creds(name string) string {
	if s.o.InsecureNoAuth {
		return ""
	}
	return s.ids.SeedPath(name)
}

// Identities is the identity store (keyring and seeds).
func (s *Server) Identities() auth.Store { return s.ids }

func (s *Server) healthy() error {
	for _, nc := range s.conns {
		if !nc.IsConnected() {
			return errors.New("NATS disconnected")
		}
	}
	if s.ns != nil && !s.ns.JetStreamEnabled() {
		return errors.New("embedded JetStream is not running")
	}
	return nil
}

// NATSURL is the URL clients (the CLI, other services) connect to.
func (s *Server) NATSURL() string { return s.url }

// HTTPAddr is the address of /metrics and /healthz.
func (s *Server) HTTPAddr() string { return s.httpAddr }

// Run runs the five services until ctx ends, then shuts down in order:
// the services drain their consumers, the NATS connection drains, the HTTP
// server and the embedded NATS server stop.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(s.services))
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopHistory := func() {}
	if len(s.buses) > 0 {
		// One in-memory history of the runs serves every service's
		// history reads (one follower of the stream, not a consumer per read).
		stopHistory = eventbus.StartHistoryCache(sctx, s.buses[0], eventbus.HistoryCacheOptions{Log: s.log}, s.buses[1:]...)
	}
	for name, svc := range s.services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := svc.Run(sctx); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel() // one service down takes the process down: never half a pipeline
			}
		}()
	}
	if s.ns != nil && s.keyring != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.watchKeyring(sctx) }()
	}
	s.log.Info("runbook serving", "nats", s.url, "http", s.httpAddr, "embedded", s.ns != nil, "auth", !s.o.InsecureNoAuth)
	wg.Wait()
	stopHistory()
	close(errs)
	var runErr error
	for err := range errs {
		runErr = errors.Join(runErr, err)
	}
	s.close()
	return runErr
}

func (s *Server) close() {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.ShutdownTimeout)
	defer cancel()
	if s.httpSrv != nil {
		_ = s.httpSrv.Shutdown(ctx)
	}
	for _, nc := range s.conns {
		if err := svcmain.Drain(ctx, nc); err != nil {
			s.log.Warn("NATS drain", "err", err)
		}
		nc.Close()
	}
	s.shutdownNATS()
	if s.store != nil {
		s.store.Close() // last: the reporter's consumer has drained
	}
}

func (s *Server) shutdownNATS() {
	if s.ns != nil {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	}
}

// watchKeyring gives the embedded server the keyring's identities whenever
// the file changes: `runbook identity create` lets a new key in at once,
// `revoke` shuts one out (its connections are closed).
func (s *Server) watchKeyring(ctx context.Context) {
	poll := s.o.KeyringPoll
	if poll <= 0 {
		poll = time.Second
	}
	last, _ := s.keyring.Keyring()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		kr, err := s.keyring.Keyring()
		if err != nil {
			s.log.Error("keyring unreadable: the server keeps the identities it has", "path", s.keyring.Path(), "err", err)
			continue
		}
		if kr == last {
			continue
		}
		last = kr
		o := s.nsOpts
		o.Users = auth.Users(kr)
		if err := embedded.Reload(s.ns, o); err != nil {
			s.log.Error("keyring changed but the server could not take it", "err", err)
			continue
		}
		s.log.Info("keyring reloaded", "identities", len(kr.Identities), "active", len(o.Users))
	}
}

func jetstreamOf(nc *nats.Conn) jetstream.JetStream {
	js, _ := jetstream.New(nc) // fails only on bad options
	return js
}
