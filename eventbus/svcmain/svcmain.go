// Package svcmain is the thin main shared by every service binary
// (services/<name>/cmd/<name>): flags into options, a signal context,
// connect, run the service, then shut down in order — the service drains its
// consumers, then the NATS connection drains — under a deadline.
package svcmain

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kis-core/runbook/eventbus"
)

// Deps are what every service is built from.
type Deps struct {
	Bus      *eventbus.Bus
	Log      *slog.Logger
	Registry prometheus.Registerer
	Metrics  *eventbus.Metrics
	// AckWait is --ack-wait: how long the service's consumer waits for an
	// ack before redelivery (0: the router's default, 30s).
	AckWait time.Duration
}

// Service is a runbook service: Run blocks until ctx ends and its consumers
// have drained.
type Service interface {
	Run(ctx context.Context) error
}

// HTTPService is a Service that also serves HTTP (the reporter's read API
// and dashboard): Main mounts its Handler at "/" on the --metrics-listen
// server, next to /metrics and /healthz.
type HTTPService interface {
	Service
	Handler() http.Handler
}

// Options of a service binary.
type Options struct {
	NATSURL       string
	MetricsListen string
	Replicas      int
	LogLevel      string
	ShutdownAfter time.Duration
	AckWait       time.Duration
}

// Main runs the service binary name; build makes the service from its deps.
// It returns the process exit code.
func Main(name string, build func(Deps) (Service, error)) int {
	return MainWithFlags(name, nil, build)
}

// MainWithFlags is Main for a service with flags of its own: flags adds
// them to the flag set (they appear in --help); build runs after parsing.
func MainWithFlags(name string, flags func(*flag.FlagSet), build func(Deps) (Service, error)) int {
	var o Options
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	if flags != nil {
		flags(fs)
	}
	fs.StringVar(&o.NATSURL, "nats-url", envOr("RUNBOOK_NATS_URL", "nats://127.0.0.1:4222"), "NATS server or cluster (comma-separated URLs); env RUNBOOK_NATS_URL")
	fs.StringVar(&o.MetricsListen, "metrics-listen", envOr("RUNBOOK_METRICS_LISTEN", "127.0.0.1:0"), "address of /metrics and /healthz; env RUNBOOK_METRICS_LISTEN")
	fs.IntVar(&o.Replicas, "replicas", 1, "stream replicas when this service creates the streams (3 in a cluster)")
	fs.StringVar(&o.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&o.ShutdownAfter, "shutdown-timeout", 15*time.Second, "how long shutdown may take")
	fs.DurationVar(&o.AckWait, "ack-wait", 0, "how long an un-acked message waits before redelivery to another instance (0: 30s)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\nRuns runbook's %s service against a NATS JetStream server.\n\n", name, name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, name, o, build); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

func run(ctx context.Context, name string, o Options, build func(Deps) (Service, error)) error {
	log := NewLogger(o.LogLevel).With("service", name)
	host, _ := os.Hostname()
	nc, err := eventbus.Connect(o.NATSURL, "runbook-"+name)
	if err != nil {
		return err
	}
	defer nc.Close()
	bctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	bus, err := eventbus.NewBus(bctx, nc, eventbus.Options{Source: name + "/" + host, Provision: true, Streams: eventbus.StreamOptions{Replicas: o.Replicas}})
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := build(Deps{Bus: bus, Log: log, Registry: reg, Metrics: eventbus.NewMetrics(reg), AckWait: o.AckWait})
	if err != nil {
		return err
	}
	var extra []http.Handler
	if hs, ok := svc.(HTTPService); ok {
		extra = append(extra, hs.Handler())
	}
	srv, addr, err := ServeMetrics(o.MetricsListen, reg, func() error {
		if !nc.IsConnected() {
			return errors.New("NATS disconnected")
		}
		return nil
	}, extra...)
	if err != nil {
		return err
	}
	log.Info("started", "nats", nc.ConnectedUrlRedacted(), "metrics", "http://"+addr+"/metrics")

	runErr := svc.Run(ctx) // returns after its consumers drained
	sctx, scancel := context.WithTimeout(context.Background(), o.ShutdownAfter)
	defer scancel()
	_ = srv.Shutdown(sctx)
	if err := Drain(sctx, nc); err != nil {
		log.Warn("NATS drain", "err", err)
	}
	log.Info("stopped")
	return runErr
}

// Drain drains the NATS connection (pending publishes flushed, subscriptions
// ended) and waits until it is closed or ctx ends.
func Drain(ctx context.Context, nc *nats.Conn) error {
	if err := nc.Drain(); err != nil {
		return err
	}
	for !nc.IsClosed() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// ServeMetrics serves /metrics from reg and /healthz from healthy on addr,
// and extra (at most one: the reporter's read API and dashboard) at "/".
func ServeMetrics(addr string, reg *prometheus.Registry, healthy func() error, extra ...http.Handler) (*http.Server, string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("metrics listener on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	for _, h := range extra {
		mux.Handle("/", h)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return srv, l.Addr().String(), nil
}

// NewLogger is the JSON slog logger every runbook process uses.
func NewLogger(level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
