// Command estimator runs the demo stand-in for KIS_CORE_V3's estimator: the
// target that runbook's example plans deploy, watch and test.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/eventbus/cliconv"
	"github.com/kis-core/runbook/examples/estimator"
)

const long = `A small HTTP service standing in for KIS_CORE_V3's estimator:

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
  cp .demo/estimator/releases/v2.4.0.json     .demo/estimator/current-release.json   # rollback`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cliconv.Execute(ctx, command(), os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is the estimator's command line, with runbook's conventions
// (--version, usage errors exit 2).
func command() *cobra.Command {
	var listen, stateDir string
	c := &cobra.Command{
		Use:   "estimator [flags]",
		Short: "The demo stand-in for KIS_CORE_V3's estimator",
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("service", "estimator")
			return serve(cmd.Context(), listen, stateDir, log)
		},
	}
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:18080", "address to serve on")
	c.Flags().StringVar(&stateDir, "state-dir", ".demo/estimator", "folder of current-release.json and releases/")
	cliconv.Conventions(c, "estimator")
	return c
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
