// Command reporter runs runbook's REPORT service against a NATS JetStream
// server: it folds every run's events and publishes each final run's
// report.ready once.
//
// --database-url (env RUNBOOK_DATABASE_URL) keeps the read model in
// PostgreSQL (package pgstore) instead of memory. Any number of reporters
// may share one database: the holder of its write lease projects and
// reports, the others stand by and serve the read API from it, and take
// over when the holder stops, dies, or stops answering for
// --lease-timeout (services/reporter/README.md, "Replicas").
//
// The read API, its live stream and the web dashboard (package api) are
// served on --metrics-listen: http://<addr>/ next to /metrics.
//
// The notifier (package notify) runs beside it: the Slack, webhook and
// e-mail notifications of each report.ready, to the plan's report.notify
// destinations and to the --notify-* ones.
package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/api"
	"github.com/kis-core/runbook/services/reporter/notify"
	"github.com/kis-core/runbook/services/reporter/pgstore"
)

func main() {
	c, closeStore := command()
	code := svcmain.Run(c)
	// svcmain returns after the consumers and NATS drained: the pool closes last.
	closeStore()
	os.Exit(code)
}

// command is the reporter's command line; closeStore closes the
// PostgreSQL pool it opened, if any, once the command returned.
func command() (c *cobra.Command, closeStore func()) {
	var dbURL, reportsDir string
	var leaseTimeout time.Duration
	var slackEnv, webhookURL, smtpEnv, emailTo string
	var store *pgstore.Store
	c = svcmain.Command(svcmain.Reporter, func(fs *pflag.FlagSet) {
		fs.StringVar(&dbURL, "database-url", os.Getenv(svcmain.EnvDatabaseURL), "PostgreSQL for the read model and history; empty: in memory, rebuilt from the stream; env "+svcmain.EnvDatabaseURL)
		fs.DurationVar(&leaseTimeout, "lease-timeout", 10*time.Second, "with --database-url: how long a reporter holding the read model's write lease keeps it once it stops answering (frozen, cut off from PostgreSQL) before a standby takes over")
		fs.StringVar(&reportsDir, "reports-dir", os.Getenv(svcmain.EnvReportsDir), "also write each report as <dir>/<run>-report.json; empty: no files; env "+svcmain.EnvReportsDir)
		fs.StringVar(&slackEnv, "notify-slack-env", "", "NAME of the env var holding a Slack webhook URL notified of every run (the plan's report.notify adds its own)")
		fs.StringVar(&webhookURL, "notify-webhook", "", "URL receiving every run's report JSON (POST)")
		fs.StringVar(&emailTo, "notify-email-to", "", "comma-separated recipients of the e-mail report (runs that failed, rolled back or had issues); needs --notify-smtp-env")
		fs.StringVar(&smtpEnv, "notify-smtp-env", "", "NAME of the env var holding smtp://user:pass@host:port?from=... for --notify-email-to")
	}, func(d svcmain.Deps) (svcmain.Service, error) {
		dests, err := notify.ServerDestinations(slackEnv, webhookURL, smtpEnv, strings.Split(emailTo, ","))
		if err != nil {
			return nil, err
		}
		o := reporter.Options{ReportsDir: reportsDir, LeaseTimeout: leaseTimeout}
		if dbURL != "" {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := pgstore.Open(ctx, dbURL)
			if err != nil {
				return nil, err
			}
			store, o.Model = s, s
			d.Log.Info("read model in PostgreSQL")
		}
		rep := reporter.New(d.Bus, o, d.Log, d.Metrics, d.Registry)
		n := notify.New(d.Bus, notify.Options{Consumer: d.Consumer(), Destinations: dests, Getenv: os.LookupEnv}, d.Log, d.Metrics, d.Registry)
		// The read API and dashboard (package api) run with the reporter,
		// on --metrics-listen next to /metrics and /healthz.
		// Beyond loopback it needs a bearer token of the keyring's identities.
		ao := api.Options{Model: rep.Model(), Bus: d.Bus, Log: d.Log.With("component", "api"),
			ListenAddr: d.MetricsListen, RequireToken: !api.IsLoopback(d.MetricsListen)}
		if d.Keyring != nil {
			// Tokens, and the keys the dashboard's decisions are verified with.
			ao.Authorize, ao.Keyring = d.Keyring.Authorize, d.Keyring
		}
		a := api.New(ao)
		return httpServices{services: services{rep, n, a}, h: a.Handler()}, nil
	})
	return c, func() {
		if store != nil {
			store.Close()
		}
	}
}

// services runs several services until ctx ends; the first to fail stops
// the others (never half a REPORT phase).
type services []svcmain.Service

func (ss services) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(ss))
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = s.Run(ctx); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// httpServices runs the reporter, the notifier and the read API in one
// process and hands svcmain the API's handler to mount at "/".
type httpServices struct {
	services
	h http.Handler
}

func (s httpServices) Handler() http.Handler { return s.h }
