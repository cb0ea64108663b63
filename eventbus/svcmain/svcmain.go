// Package svcmain is the thin main shared by every service binary
// (services/<name>/cmd/<name>): flags into options, a signal context,
// connect, run the service, then shut down in order — the service drains its
// consumers, then the NATS connection drains — under a deadline.
package svcmain

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
	"github.com/kis-core/runbook/eventbus/cliconv"
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
	// Keyring is --keyring: the identities whose signed decisions the
	// service trusts; nil with --insecure-no-auth.
	Keyring *auth.KeyringFile
	// Insecure is --insecure-no-auth.
	Insecure bool
	// MetricsListen is --metrics-listen (the reporter serves its read API there).
	MetricsListen string
}

// Consumer is the consumer options every service binary starts from:
// --ack-wait, and with --keyring the check of who published each message.
func (d Deps) Consumer() eventbus.ConsumerOptions {
	c := eventbus.ConsumerOptions{AckWait: d.AckWait}
	if d.Keyring != nil {
		c.Keyring = d.Keyring
	}
	return c
}

// RequireKeyring is the keyring of a service that verifies people's
// signed decisions: an error when it was not given (and auth is on).
func (d Deps) RequireKeyring(service string) (*auth.KeyringFile, error) {
	if d.Keyring == nil && !d.Insecure {
		return nil, fmt.Errorf("the %s verifies signed decisions: give --keyring FILE (env RUNBOOK_KEYRING), e.g. <data-dir>/identities/keyring.json", service)
	}
	return d.Keyring, nil
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
	// Instance names this process in every event's source
	// ("<service>/<instance>"); "" is eventbus.DefaultInstance, host:pid.
	Instance       string
	Replicas       int
	LogLevel       string
	ShutdownAfter  time.Duration
	AckWait        time.Duration
	Creds          string
	Keyring        string
	InsecureNoAuth bool
	TLS            auth.TLSFiles
}

// Run runs a service binary's command (Command) on the process's arguments
// until SIGINT or SIGTERM and returns the exit code (cliconv.Execute).
func Run(c *cobra.Command) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cliconv.Execute(ctx, c, os.Args[1:], os.Stdout, os.Stderr)
}

// Command is the command line of the service binary name: the flags every
// service shares (the same names and environment variables as the runbook
// command's: Env), the service's own (flags), --help and --version.
func Command(name string, flags func(*pflag.FlagSet), build func(Deps) (Service, error)) *cobra.Command {
	var o Options
	c := &cobra.Command{
		Use:   name + " [flags]",
		Short: "Runs runbook's " + name + " service against a NATS JetStream server",
		Long: "Runs runbook's " + name + ` service against a NATS JetStream server.

Every flag that has an environment variable names it; the flag given on the
command line wins. docs/cli.md lists the flags and variables of every binary.

Exit codes: 0 stopped cleanly (or --help, --version), 1 the service failed,
2 a usage error (unknown flag, bad value, an argument).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := ParseLogLevel(o.LogLevel); err != nil {
				return cliconv.Usage(err)
			}
			return run(cmd.Context(), name, o, build)
		},
	}
	fs := c.Flags()
	if flags != nil {
		flags(fs)
	}
	fs.StringVar(&o.NATSURL, "nats-url", EnvOr(EnvNATSURL, "nats://127.0.0.1:4222"), "NATS server or cluster (comma-separated URLs); env "+EnvNATSURL)
	fs.StringVar(&o.MetricsListen, "metrics-listen", EnvOr(EnvMetricsListen, "127.0.0.1:0"), "address of /metrics and /healthz; env "+EnvMetricsListen)
	fs.StringVar(&o.Instance, "instance", os.Getenv(EnvInstance), "this replica's name in every event's source, "+name+"/<instance> (default <host>:<pid>: unique per process and per container); env "+EnvInstance)
	fs.IntVar(&o.Replicas, "replicas", 1, "stream replicas when this service creates the streams (3 in a cluster)")
	fs.StringVar(&o.LogLevel, "log-level", EnvOr(EnvLogLevel, "info"), "debug, info, warn or error; env "+EnvLogLevel)
	fs.DurationVar(&o.ShutdownAfter, "shutdown-timeout", 15*time.Second, "how long shutdown may take")
	fs.DurationVar(&o.AckWait, "ack-wait", 0, "how long an un-acked message waits before redelivery to another instance (0: 30s)")
	fs.StringVar(&o.Creds, "creds", os.Getenv(EnvCreds), "this service's identity: its nkey seed file (runbook serve writes <data-dir>/identities/"+name+".nk); env "+EnvCreds)
	fs.StringVar(&o.Keyring, "keyring", os.Getenv(EnvKeyring), "the keyring of identities whose signed decisions are trusted (<data-dir>/identities/keyring.json); env "+EnvKeyring)
	fs.StringVar(&o.TLS.CA, "tls-ca", os.Getenv(EnvTLSCA), "CA certificate (PEM) that verifies the NATS server's TLS certificate; env "+EnvTLSCA)
	fs.StringVar(&o.TLS.Cert, "tls-cert", os.Getenv(EnvTLSCert), "certificate (PEM) for --metrics-listen: serve it over HTTPS; env "+EnvTLSCert)
	fs.StringVar(&o.TLS.Key, "tls-key", os.Getenv(EnvTLSKey), "the key of --tls-cert; env "+EnvTLSKey)
	fs.BoolVar(&o.InsecureNoAuth, "insecure-no-auth", false, "connect without credentials and trust unsigned decisions: for experiments only")
	cliconv.Conventions(c, name)
	return c
}

func run(ctx context.Context, name string, o Options, build func(Deps) (Service, error)) error {
	source := eventbus.SourceOf(name, o.Instance)
	// The one place a service's logger is named: the services themselves
	// add no "service" key (a JSON line with two is ambiguous).
	log, err := NewLogger(os.Stderr, o.LogLevel)
	if err != nil {
		return err
	}
	log = log.With("service", name, "source", source)
	var copts []nats.Option
	var signer nkeys.KeyPair
	var keyring *auth.KeyringFile
	switch {
	case o.InsecureNoAuth:
		log.Warn("INSECURE: --insecure-no-auth: connecting without credentials and trusting unsigned decisions; never run production this way")
	case o.Creds == "":
		return fmt.Errorf("no credentials: give --creds FILE (env RUNBOOK_CREDS), the %s identity's seed (runbook serve writes <data-dir>/identities/%s.nk; runbook identity create %s --role %s makes one), or --insecure-no-auth for experiments", name, name, name, name)
	default:
		id, err := auth.Open(o.Creds)
		if err != nil {
			return err
		}
		copts, signer = id.Options(), id.KP
		if o.Keyring != "" {
			keyring = auth.NewKeyringFile(o.Keyring)
			if _, err := keyring.Keyring(); err != nil {
				return err
			}
		}
	}
	if o.TLS.CA != "" {
		topts, err := auth.ClientOptions(o.TLS.CA)
		if err != nil {
			return err
		}
		copts = append(copts, topts...)
	}
	nc, err := eventbus.Connect(o.NATSURL, "runbook-"+source, copts...)
	if err != nil {
		return err
	}
	defer nc.Close()
	bctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	// With credentials the streams are the admin's to create (runbook serve,
	// or runbook provision): a service only looks them up.
	bus, err := eventbus.NewBus(bctx, nc, eventbus.Options{Source: source, Provision: o.InsecureNoAuth, Streams: eventbus.StreamOptions{Replicas: o.Replicas}, Signer: signer})
	if err != nil {
		return err
	}
	// The service's history reads come from memory (one follower of the
	// audit stream) instead of a consumer per read.
	stopHistory := eventbus.StartHistoryCache(ctx, bus, eventbus.HistoryCacheOptions{Log: log})
	defer stopHistory()
	reg := eventbus.NewRegistry() // Go, process, runbook_build_info
	svc, err := build(Deps{Bus: bus, Log: log, Registry: reg, Metrics: eventbus.NewMetrics(reg), AckWait: o.AckWait, Keyring: keyring, Insecure: o.InsecureNoAuth, MetricsListen: o.MetricsListen})
	if err != nil {
		return err
	}
	var extra []http.Handler
	if hs, ok := svc.(HTTPService); ok {
		extra = append(extra, hs.Handler())
	}
	var httpTLS *tls.Config
	if o.TLS.Enabled() {
		if httpTLS, err = o.TLS.ServerConfig(); err != nil {
			return err
		}
	}
	srv, addr, err := ServeMetrics(o.MetricsListen, httpTLS, reg, func() error {
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
// With tlsCfg it serves HTTPS only.
func ServeMetrics(addr string, tlsCfg *tls.Config, reg *prometheus.Registry, healthy func() error, extra ...http.Handler) (*http.Server, string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("metrics listener on %s: %w", addr, err)
	}
	if tlsCfg != nil {
		l = tls.NewListener(l, tlsCfg)
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

// NewLogger is the JSON slog logger every runbook process uses, writing
// to w at level (ParseLogLevel). A time.Duration is written as a string
// ("1.5s"), not as slog's integer nanoseconds.
func NewLogger(w io.Writer, level string) (*slog.Logger, error) {
	lv, err := ParseLogLevel(level)
	if err != nil {
		return nil, err
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv, ReplaceAttr: readableDuration})), nil
}

func readableDuration(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// ParseLogLevel reads --log-level: debug, info, warn or error (any case).
func ParseLogLevel(s string) (slog.Level, error) {
	var lv slog.Level
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
	default:
		return lv, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
	}
	if err := lv.UnmarshalText([]byte(s)); err != nil {
		return lv, fmt.Errorf("--log-level %q: %w", s, err)
	}
	return lv, nil
}

// EnvOr is the environment variable key, or def when it is unset or empty:
// the default of a flag that an environment variable may set.
func EnvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
