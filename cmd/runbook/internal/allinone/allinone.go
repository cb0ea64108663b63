// Package allinone is `runbook serve`: an embedded NATS server (or an
// external one) and the five services in one process, with /metrics and
// /healthz. Tests start it in-process.
package allinone

import (
	"context"
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
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/kis-core/runbook/eventbus"
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
}

// Server is a running all-in-one runbook.
type Server struct {
	o        Options
	log      *slog.Logger
	ns       *server.Server
	nc       *nats.Conn
	url      string
	httpAddr string
	httpSrv  *http.Server
	services map[string]svcmain.Service
	store    *pgstore.Store
	Reporter *reporter.Service
}

// New starts NATS (embedded or connected) and builds the services; Run runs them.
func New(ctx context.Context, o Options) (*Server, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
		o.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 15 * time.Second
	}
	s := &Server{o: o, log: o.Log, url: o.NATSURL}
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
		ns, err := embedded.Start(embedded.Options{Host: host, Port: port, StoreDir: abs, NoSync: o.NoSync})
		if err != nil {
			return nil, err
		}
		s.ns = ns
		s.url = ns.ClientURL()
	}
	nc, err := eventbus.Connect(s.url, "runbook-serve")
	if err != nil {
		s.shutdownNATS()
		return nil, err
	}
	s.nc = nc
	host, _ := os.Hostname()
	m := eventbus.NewMetrics(o.Registry)
	bus := func(name string) (*eventbus.Bus, error) {
		bctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		return eventbus.NewBus(bctx, nc, eventbus.Options{Source: name + "/" + host, Provision: true, Streams: eventbus.StreamOptions{Replicas: o.Replicas}})
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
			s.services[name] = preflight.New(b, preflight.Options{Consumer: o.Preflight}, log, m, o.Registry)
		case "deployer":
			s.services[name] = deployer.New(b, deployer.Options{Consumer: o.Deployer, StepFault: o.DeployerStepFault}, log, m, o.Registry)
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
				s.services["notifier"] = notify.New(b, o.Notify, o.Log, m, o.Registry)
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
			a := api.New(api.Options{Model: s.Reporter.Model(), Bus: b, Log: o.Log.With("component", "api")})
			s.services["api"] = a
			app.Handle("/", a.Handler())
		}
		srv, addr, err := svcmain.ServeMetrics(o.HTTPListen, o.Registry, s.healthy, extra...)
		if err != nil {
			s.close()
			return nil, err
		}
		s.httpSrv, s.httpAddr = srv, addr
	}
	return s, nil
}

func (s *Server) healthy() error {
	if !s.nc.IsConnected() {
		return errors.New("NATS disconnected")
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
	s.log.Info("runbook serving", "nats", s.url, "http", s.httpAddr, "embedded", s.ns != nil)
	wg.Wait()
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
	if s.nc != nil {
		if err := svcmain.Drain(ctx, s.nc); err != nil {
			s.log.Warn("NATS drain", "err", err)
		}
		s.nc.Close()
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
