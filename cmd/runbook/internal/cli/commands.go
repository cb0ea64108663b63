package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/domain/gate"
	"github.com/kis-core/runbook/domain/plan/planview"
	"github.com/kis-core/runbook/domain/risk"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/notify"
	"github.com/kis-core/runbook/services/reporter/report"
)

func serveCmd(g *globals) *cobra.Command {
	var o allinone.Options
	var external bool
	var logLevel string
	var notifySlackEnv, notifyWebhook, notifySMTPEnv string
	var notifyEmailTo []string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run NATS JetStream (embedded) and the five services in this process",
		Long: `serve starts an embedded NATS server with JetStream on --data-dir and runs
preflight, deployer, monitor, tester and reporter against it. The same data
dir after a restart gives back the same runs. Every write is fsynced before
it is acknowledged (an approval or a rollback decision must survive a power
cut); --no-sync trades that for speed.

With --nats-url (or --external, to take the URL from RUNBOOK_NATS_URL) the
services connect to that server or cluster (NATS 2.10 or newer) instead of
starting one.

Each report the reporter publishes is also written to --reports-dir as
<run>-report.json (the report JSON byte for byte); --reports-dir "" writes none.

Every report is also notified to the plan's report.notify destinations and
to the --notify-* ones (Slack, a webhook, e-mail for runs that failed,
rolled back or had issues), once per run and destination.

/metrics, /healthz, the read API (/api/v1/...), its live stream
(/api/v1/stream) and the web dashboard (/) are served on --http-listen.`,
		Example: `  runbook serve --nats-listen 127.0.0.1:14222 --data-dir .runbook/data
  runbook serve --nats-url nats://n1:4222,nats://n2:4222,nats://n3:4222 --replicas 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Log = svcmain.NewLogger(logLevel)
			dests, err := notify.ServerDestinations(notifySlackEnv, notifyWebhook, notifySMTPEnv, notifyEmailTo)
			if err != nil {
				return err
			}
			o.Notify.Destinations, o.Notify.Getenv = dests, os.LookupEnv
			if external || cmd.Flags().Changed("nats-url") {
				o.NATSURL = g.natsURL
			}
			o.TLS.CA = g.tlsCA
			srv, err := allinone.New(cmd.Context(), o)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.errOut, "runbook serving: NATS %s, metrics http://%s/metrics, data %s\n", srv.NATSURL(), srv.HTTPAddr(), o.DataDir)
			return srv.Run(cmd.Context())
		},
	}
	f := c.Flags()
	f.StringVar(&o.DataDir, "data-dir", filepath.Join(".runbook", "data"), "JetStream data directory of the embedded server")
	f.StringVar(&o.NATSListen, "nats-listen", "127.0.0.1:4222", "where the embedded NATS server accepts clients (port 0: any free port)")
	f.StringVar(&o.HTTPListen, "http-listen", "127.0.0.1:9464", "address of /metrics, /healthz, the read API and the dashboard")
	f.BoolVar(&external, "external", false, "connect to RUNBOOK_NATS_URL / --nats-url instead of embedding a server")
	f.BoolVar(&o.NoSync, "no-sync", false, "do not fsync every write (faster; loses acknowledged events on power loss)")
	f.IntVar(&o.Replicas, "replicas", 1, "stream replicas when creating the streams (3 in a cluster)")
	f.StringVar(&o.Instance, "instance", os.Getenv(svcmain.EnvInstance), "this process's name in every event's source, <service>/<instance> (default <host>:<pid>); env "+svcmain.EnvInstance)
	f.BoolVar(&o.InsecureNoAuth, "insecure-no-auth", false, "INSECURE: accept anonymous NATS clients with every permission and trust unsigned decisions (experiments only; warned at every start)")
	f.StringVar(&o.IdentityDir, "identity-dir", "", "identities (keyring.json and the services' seeds); default <data-dir>/identities")
	f.StringVar(&o.TLS.Cert, "tls-cert", os.Getenv(svcmain.EnvTLSCert), "server certificate (PEM): the embedded NATS server then requires TLS and --http-listen serves HTTPS (env "+svcmain.EnvTLSCert+")")
	f.StringVar(&o.TLS.Key, "tls-key", os.Getenv(svcmain.EnvTLSKey), "the key of --tls-cert (env "+svcmain.EnvTLSKey+")")
	f.StringSliceVar(&o.HTTPAllowedHosts, "http-allowed-host", nil, "a host name the read API and dashboard answer to besides the listen host and loopback (repeatable); beyond loopback they need a bearer token (runbook identity create prints one)")
	f.StringVar(&o.DatabaseURL, "database-url", envOr(svcmain.EnvDatabaseURL, ""), "PostgreSQL URL for the reporter's read model (runs, events, reports); env "+svcmain.EnvDatabaseURL+"; empty keeps it in memory")
	f.StringVar(&o.ReportsDir, "reports-dir", filepath.Join(".runbook", "reports"), "where each published report is also written as <run>-report.json (\"\" for none)")
	f.StringVar(&o.LoadSummaryDir, "load-summary-dir", "", "where each load test's k6-shaped summary is written as <run>-k6-summary.json (\"\" for none; the test.load event carries it)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&notifySlackEnv, "notify-slack-env", "", "NAME of the env var holding a Slack webhook URL notified of every run (the plan's report.notify adds its own)")
	f.StringVar(&notifyWebhook, "notify-webhook", "", "URL receiving every run's report JSON (POST)")
	f.StringSliceVar(&notifyEmailTo, "notify-email-to", nil, "recipients of the e-mail report (runs that failed, rolled back or had issues), comma-separated; needs --notify-smtp-env")
	f.StringVar(&notifySMTPEnv, "notify-smtp-env", "", "NAME of the env var holding smtp://user:pass@host:port?from=... for --notify-email-to")
	return c
}

func validateCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "validate PLAN",
		Short: "Check a change plan and print it as it will run",
		Long: `validate checks PLAN against the schema every service uses: each error names
the field, its line and column, the value written and what is allowed. Then
it prints the plan as it will run: checks, steps, health checks, rollback,
the watch window and thresholds, tests, the risk report and the approvals
needed. Exit code 1 when the plan is invalid.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, _, issues, err := loadPlan(args[0], g.out)
			if err != nil {
				return err
			}
			a := risk.Assess(p.RisksAndMitigations, p.Approval)
			fmt.Fprint(g.out, planview.Describe(p, a))
			warnings := 0
			for _, i := range issues {
				if i.Warning {
					warnings++
				}
			}
			fmt.Fprintf(g.out, "\n%s is valid (%d warning(s)).\n", args[0], warnings)
			return nil
		},
	}
}

func submitCmd(g *globals) *cobra.Command {
	var watch bool
	c := &cobra.Command{
		Use:   "submit PLAN",
		Short: "Validate and submit a change plan; print its run id",
		Long: `submit validates PLAN (nothing is published when it is invalid), publishes
change.requested and prints the run id. With --watch it follows the run
live until its report is ready and exits 0 only when the run ended SUCCESS.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, data, _, err := loadPlan(args[0], g.errOut)
			if err != nil {
				return err
			}
			bus, closeFn, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			run, err := Submit(cmd.Context(), bus, filepath.Base(args[0]), data, p, g.whoami())
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "submitted %s (%s: %s) as run %s\n", args[0], p.ChangeRequest.ID, p.ChangeRequest.Title, run)
			if !watch {
				return nil
			}
			return watchRun(cmd.Context(), bus, run, g)
		},
	}
	c.Flags().BoolVarP(&watch, "watch", "w", false, "follow the run until its report is ready")
	return c
}

func watchCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "watch RUN",
		Short: "Follow a run live, phase by phase, until its report is ready",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bus, closeFn, err := g.connectRun(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer closeFn()
			return watchRun(cmd.Context(), bus, args[0], g)
		},
	}
}

// connectRun connects and checks that run exists.
func (g *globals) connectRun(ctx context.Context, run string) (*eventbus.Bus, func(), error) {
	if err := eventbus.ValidateRunID(run); err != nil {
		return nil, nil, &exitError{2, err}
	}
	bus, closeFn, err := g.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	e, err := bus.LastEvent(ctx, run, "change.requested")
	if err == nil && e == nil {
		err = &exitError{2, fmt.Errorf("no run %s (list runs with `runbook runs`)", run)}
	}
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	return bus, closeFn, nil
}

func watchRun(ctx context.Context, bus *eventbus.Bus, run string, g *globals) error {
	var start time.Time
	var final string
	err := bus.Follow(ctx, []string{eventbus.RunSubjects(run)}, 0, func(e eventbus.Envelope) error {
		t := e.Event.GetTime().AsTime()
		if start.IsZero() {
			start = t
		}
		phase, text := Describe(e.Event)
		fmt.Fprintf(g.out, "%8s  %-10s %s\n", "+"+t.Sub(start).Truncate(10*time.Millisecond).String(), phase, text)
		if rr := e.Event.GetReportReady(); rr != nil {
			final = rr.GetStatus()
			fmt.Fprintf(g.out, "\n%s\n", rr.GetQcSummary())
			return eventbus.StopFollow()
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return &exitError{130, errors.New("stopped watching (the run goes on)")}
		}
		return err
	}
	return statusExit(final)
}

func runsCmd(g *globals) *cobra.Command {
	var waitingOnly bool
	c := &cobra.Command{
		Use:   "runs",
		Short: "List runs, newest first, with their status and what waiting runs wait for",
		Long: `runs lists every run, newest first, with its status (the fold the reporter
uses). WAITING FOR shows what a run held at the gate waits for: the roles
still to approve (runbook approve), or the change window and when it opens;
"expires" is when it ends EXPIRED if still waiting.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bus, closeFn, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			// The reporter's fold of each run (reporter.Fold): the same
			// status, start and existence as the read API's.
			folds := map[string]*reporter.Fold{}
			err = bus.Scan(cmd.Context(), []string{eventbus.SubjectPrefix + ".>"}, 0, func(e eventbus.Envelope) error {
				f := folds[e.Event.RunId]
				if f == nil {
					f = reporter.NewFold(e.Event.RunId)
					folds[e.Event.RunId] = f
				}
				f.Apply(e)
				return nil
			})
			if err != nil {
				return err
			}
			// A run of dead letters only, or whose only events were
			// refused, is no run: counted below, not listed.
			var runs []reporter.RunSummary
			phantoms := 0
			for _, f := range folds {
				if f.Exists() {
					runs = append(runs, f.Summary())
				} else {
					phantoms++
				}
			}
			reporter.SortRuns(runs)
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RUN\tSTATUS\tWAITING FOR\tCHANGE\tTITLE\tSTARTED")
			shown := 0
			for _, r := range runs {
				w := waitingText(folds[r.RunID].State)
				if waitingOnly && w == "-" {
					continue
				}
				shown++
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.RunID, r.Status, w, r.ChangeID, r.Title, r.Started.Local().Format(time.DateTime))
			}
			switch {
			case len(runs) == 0:
				fmt.Fprintln(tw, "(no runs yet: submit one with `runbook submit PLAN`)")
			case shown == 0:
				fmt.Fprintln(tw, "(no run is waiting)")
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if phantoms > 0 {
				fmt.Fprintf(g.out, "\n%d run id(s) hold dead-lettered messages only: no runs (their dead letters: GET /api/v1/dead-letters)\n", phantoms)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&waitingOnly, "waiting", false, "list only the runs waiting for approval or for their change window")
	return c
}

// waitingText is the WAITING FOR column: "-" when the run does not wait.
func waitingText(st *runstate.State) string {
	if len(st.WaitingFor) == 0 || (st.Status != runstate.AwaitingApproval && st.Status != runstate.WaitingWindow) {
		return "-"
	}
	var s string
	if st.WaitingFor[0] == gate.WindowRole {
		s = "window until " + st.WaitingUntil.Local().Format(time.DateTime)
	} else {
		s = "approval: " + strings.Join(st.WaitingFor, ", ")
		if !st.WaitingUntil.IsZero() {
			s += "; window " + st.WaitingUntil.Local().Format(time.DateTime)
		}
	}
	if !st.WaitingDeadline.IsZero() {
		s += "; expires " + st.WaitingDeadline.Local().Format(time.DateTime)
	}
	return s
}

func reportCmd(g *globals) *cobra.Command {
	var asJSON bool
	var format string
	c := &cobra.Command{
		Use:   "report RUN",
		Short: "Print a run's 12-line QC summary, its report JSON or a Markdown report",
		Long: `report prints the report the reporter published for RUN (report.ready):
--format summary (default) the 12-line QC summary, json the full report JSON
(the same bytes as <reports-dir>/RUN-report.json), markdown a readable report
with the QC summary and tables of tests, issues, approvals, rollback and
recommendations. --json is --format json. The summary and the Markdown also
link the runs it reverts or that revert it (runbook revert); the JSON is the
report as published, which a later revert does not change.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if asJSON {
				if cmd.Flags().Changed("format") && format != "json" {
					return &exitError{2, fmt.Errorf("--json and --format %s contradict each other", format)}
				}
				format = "json"
			}
			switch format {
			case "summary", "json", "markdown":
			default:
				return &exitError{2, fmt.Errorf("--format %q: want summary, json or markdown", format)}
			}
			bus, closeFn, err := g.connectRun(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer closeFn()
			e, err := bus.LastEvent(cmd.Context(), args[0], "report.ready")
			if err != nil {
				return err
			}
			if e == nil {
				return &exitError{4, fmt.Errorf("run %s has no report yet (follow it with `runbook watch %s`)", args[0], args[0])}
			}
			rr := e.Event.GetReportReady()
			if format == "json" {
				fmt.Fprintln(g.out, rr.GetReportJson())
				return nil
			}
			r, err := linkedReport(cmd.Context(), bus, args[0], rr) // revert.go
			if err != nil {
				return err
			}
			if format == "markdown" {
				fmt.Fprint(g.out, report.Markdown(r, rr.GetQcSummary()))
				return nil
			}
			fmt.Fprintln(g.out, rr.GetQcSummary())
			if links := report.LinkLines(r); len(links) > 0 {
				fmt.Fprintf(g.out, "\n%s\n", strings.Join(links, "\n"))
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "summary", "summary, json or markdown")
	c.Flags().BoolVar(&asJSON, "json", false, "print the full report JSON (same as --format json)")
	return c
}
