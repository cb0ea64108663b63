// Command runbook is the operator's tool: serve the pipeline, validate and
// submit change plans, watch runs, read reports.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
