// Command estimator runs the demo stand-in for KIS_CORE_V3's estimator: the
// target that runbook's example plans deploy, watch and test.
package main

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

	"github.com/kis-core/runbook/examples/estimator"
)

const usage = `Usage: estimator [flags]

A small HTTP service standing in for KIS_CORE_V3's estimator:

  GET  /api/v1/health      200 {"status":"ok","release":...}
  GET  /api/v1/estimates   200 list of estimates
  POST /api/v1/estimate    201 {"estimateId":"EST-...","total":...}, 400 on a bad body
  GET  /api/v1/templates   200 list of templates
  GET  /metrics            Prometheus: estimator_http_request_duration_seconds{path},
                           estimator_http_requests_total, estimator_http_errors_total (5xx)

The release switch. The running release is whatever <state-dir>/current-release.json
says; it is re-read on the next request whenever the file changes. At start the
binary writes, when missing:

  <state-dir>/releases/v2.4.0.json       good: ~5 ms, no errors
  <state-dir>/releases/v2.4.1-bad.json   bad: ~400 ms, 30 % of API requests answer 500
                                         (health stays 200: it passes the health gate)
  <state-dir>/current-release.json       the good release

So a deploy is a copy:

  cp .demo/estimator/releases/v2.4.1-bad.json .demo/estimator/current-release.json
  cp .demo/estimator/releases/v2.4.0.json     .demo/estimator/current-release.json   # rollback

Flags:
`

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("estimator", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:18080", "address to serve on")
	stateDir := fs.String("state-dir", ".demo/estimator", "folder of current-release.json and releases/")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("service", "estimator")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, *listen, *stateDir, log); err != nil {
		fmt.Fprintf(os.Stderr, "estimator: %v\n", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, listen, stateDir string, log *slog.Logger) error {
	h, err := estimator.New(stateDir, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving", "addr", "http://"+ln.Addr().String(), "state_dir", stateDir)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
