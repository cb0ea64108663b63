package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/domain/gate"
	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/plan/planview"
	"github.com/kis-core/runbook/domain/risk"
	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/cliconv"
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
			log, err := svcmain.NewLogger(os.Stderr, logLevel)
			if err != nil {
				return cliconv.Usage(err)
			}
			o.Log = log
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
	f.StringVar(&o.TLS.Cert, "tls-cert", os.Getenv(svcmain.EnvTLSCert), "server certificate (PEM): the embedded NATS server then requires TLS and --http-listen serves HTTPS; env "+svcmain.EnvTLSCert)
	f.StringVar(&o.TLS.Key, "tls-key", os.Getenv(svcmain.EnvTLSKey), "the key of --tls-cert; env "+svcmain.EnvTLSKey)
	f.StringSliceVar(&o.HTTPAllowedHosts, "http-allowed-host", nil, "a host name the read API and dashboard answer to besides the listen host and loopback (repeatable); beyond loopback they need a bearer token (runbook identity create prints one)")
	f.StringVar(&o.DatabaseURL, "database-url", os.Getenv(svcmain.EnvDatabaseURL), "PostgreSQL URL for the reporter's read model (runs, events, reports); empty keeps it in memory; env "+svcmain.EnvDatabaseURL)
	f.StringVar(&o.ReportsDir, "reports-dir", svcmain.EnvOr(svcmain.EnvReportsDir, filepath.Join(".runbook", "reports")), "where each published report is also written as <run>-report.json (\"\" for none); env "+svcmain.EnvReportsDir)
	f.StringVar(&o.LoadSummaryDir, "load-summary-dir", os.Getenv(svcmain.EnvLoadSummaryDir), "where each load test's k6-shaped summary is written as <run>-k6-summary.json (\"\" for none; the test.load event carries it); env "+svcmain.EnvLoadSummaryDir)
	f.StringVar(&logLevel, "log-level", svcmain.EnvOr(svcmain.EnvLogLevel, "info"), "debug, info, warn or error; env "+svcmain.EnvLogLevel)
	f.StringVar(&notifySlackEnv, "notify-slack-env", "", "NAME of the env var holding a Slack webhook URL notified of every run (the plan's report.notify adds its own)")
	f.StringVar(&notifyWebhook, "notify-webhook", "", "URL receiving every run's report JSON (POST)")
	f.StringSliceVar(&notifyEmailTo, "notify-email-to", nil, "recipients of the e-mail report (runs that failed, rolled back or had issues), comma-separated; needs --notify-smtp-env")
	f.StringVar(&notifySMTPEnv, "notify-smtp-env", "", "NAME of the env var holding smtp://user:pass@host:port?from=... for --notify-email-to")
	return c
}

func validateCmd(g *globals) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "validate PLAN",
		Short: "Check a change plan and print it as it will run",
		Long: `validate checks PLAN (a file, or - for stdin) against the schema every
service uses: each error names the field, its line and column, the value
written and what is allowed. Then it prints the plan as it will run: checks,
steps, health checks, rollback, the watch window and thresholds, tests, the
risk report and the approvals needed. Exit code 1 when the plan is invalid.

-o json or yaml prints the verdict as data instead: the errors and warnings
(line, column, field path, value, message), the change request and the risk
assessment; the exit code is the same.`,
		Example: `  runbook validate plan.yaml
  generate-plan | runbook validate - -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			if format != formatTable {
				return validateData(g, args[0], format)
			}
			name, p, _, issues, err := g.loadPlan(args[0], g.out)
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
			fmt.Fprintf(g.out, "\n%s is valid (%d warning(s)).\n", name, warnings)
			return nil
		},
	}
	outputFlag(c, &format, formatTable, "the issues, then the plan as it will run")
	return c
}

// validation is validate's verdict as data (-o json|yaml).
type validation struct {
	File       string          `json:"file"`
	Valid      bool            `json:"valid"`
	PlanSHA256 string          `json:"plan_sha256,omitempty"`
	Errors     []issueData     `json:"errors"`
	Warnings   []issueData     `json:"warnings"`
	Change     *changeData     `json:"change_request,omitempty"`
	Risk       *riskAssessment `json:"risk,omitempty"`
}

type issueData struct {
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Path    string `json:"path,omitempty"`
	Value   string `json:"value,omitempty"`
	Message string `json:"message"`
}

type changeData struct {
	ID        string `json:"id"`
	Title     string `json:"title"`
	Type      string `json:"type"`
	Priority  string `json:"priority"`
	Requester string `json:"requester"`
}

type riskAssessment struct {
	Level                     string     `json:"level"`
	MaxScore                  int        `json:"max_score"`
	RequiresExecutiveApproval bool       `json:"requires_executive_approval"`
	ApprovalsRequired         []string   `json:"approvals_required"`
	Risks                     []riskData `json:"risks"`
}

type riskData struct {
	ID          string `json:"id"`
	Description string `json:"description"`
	Probability string `json:"probability"`
	Impact      string `json:"impact"`
	Score       int    `json:"score"`
	Level       string `json:"level"`
	Mitigation  string `json:"mitigation,omitempty"`
	Owner       string `json:"owner,omitempty"`
}

// validateData prints validate's verdict as format; an invalid plan still
// exits 1 (one line on stderr).
func validateData(g *globals, path, format string) error {
	name, p, data, issues, err := g.loadPlan(path, nil)
	var ee *exitError
	if err != nil && (!errors.As(err, &ee) || ee.code != exitError1) {
		return err // not read at all
	}
	v := validation{File: name, Valid: p != nil, Errors: []issueData{}, Warnings: []issueData{}}
	for _, i := range issues {
		d := issueData{Line: i.Line, Column: i.Column, Path: i.Path, Value: i.Value, Message: i.Message}
		if i.Warning {
			v.Warnings = append(v.Warnings, d)
		} else {
			v.Errors = append(v.Errors, d)
		}
	}
	if p != nil {
		v.PlanSHA256 = plan.Hash(data)
		cr := p.ChangeRequest
		v.Change = &changeData{ID: cr.ID, Title: cr.Title, Type: cr.Type, Priority: cr.Priority, Requester: p.Requester.Name}
		a := risk.Assess(p.RisksAndMitigations, p.Approval)
		v.Risk = &riskAssessment{Level: a.Level, MaxScore: a.MaxScore, RequiresExecutiveApproval: a.RequiresExecutiveApproval,
			ApprovalsRequired: append([]string{}, a.ApprovalsRequired...), Risks: []riskData{}}
		for _, r := range a.Risks {
			v.Risk.Risks = append(v.Risk.Risks, riskData{ID: r.ID, Description: r.Description, Probability: r.Probability,
				Impact: r.Impact, Score: r.Score, Level: r.Level, Mitigation: r.Mitigation, Owner: r.Owner})
		}
	}
	if rerr := render(g.out, format, v, nil); rerr != nil {
		return rerr
	}
	return err
}

func submitCmd(g *globals) *cobra.Command {
	var watch bool
	c := &cobra.Command{
		Use:   "submit PLAN",
		Short: "Validate and submit a change plan; print its run id",
		Long: `submit validates PLAN (a file, or - for stdin; nothing is published when it
is invalid), publishes change.requested and prints the run id. With --watch
it follows the run live until its report is ready and exits 0 only when the
run ended SUCCESS.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, p, data, _, err := g.loadPlan(args[0], g.errOut)
			if err != nil {
				return err
			}
			bus, closeFn, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			run, err := Submit(cmd.Context(), bus, filepath.Base(name), data, p, g.whoami())
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "submitted %s (%s: %s) as run %s\n", name, p.ChangeRequest.ID, p.ChangeRequest.Title, run)
			if !watch {
				return nil
			}
			return watchRun(cmd.Context(), bus, run, g)
		},
	}
	c.Flags().BoolVarP(&watch, "watch", "w", false, "follow the run until its report is ready")
	g.asFlag(c, "your name as the requester")
	return c
}

func watchCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:               "watch RUN",
		Short:             "Follow a run live, phase by phase, until its report is ready",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeRunID,
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
		return nil, nil, &exitError{exitUsage, err}
	}
	bus, closeFn, err := g.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	e, err := bus.LastEvent(ctx, run, "change.requested")
	if err == nil && e == nil {
		err = &exitError{exitUsage, fmt.Errorf("no run %s (list runs with `runbook runs`)", run)}
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
			return &exitError{exitStopped, errors.New("stopped watching (the run goes on)")}
		}
		return err
	}
	return statusExit(final)
}

func runsCmd(g *globals) *cobra.Command {
	var waitingOnly bool
	var status, since, format string
	var limit int
	c := &cobra.Command{
		Use:   "runs",
		Short: "List runs, newest first, with their status and what waiting runs wait for",
		Long: `runs lists every run, newest first, with its status (the fold the reporter
uses). WAITING FOR shows what a run held at the gate waits for: the roles
still to approve (runbook approve), or the change window and when it opens;
"expires" is when it ends EXPIRED if still waiting.

--status, --since and --limit select runs as the read API's ?status=,
?since= and ?limit= do. STARTED and the waiting times are UTC unless --local.`,
		Example: `  runbook runs --status rolled_back --since 168h
  runbook runs --waiting -o json | jq '.runs[].run_id'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			filter := reporter.RunFilter{Limit: limit}
			if status != "" {
				st, err := runstate.ParseStatus(status)
				if err != nil {
					return cliconv.Usage(fmt.Errorf("--status: %w", err))
				}
				filter.Status = st
			}
			if since != "" {
				t, err := parseSince(since, time.Now())
				if err != nil {
					return cliconv.Usage(err)
				}
				filter.Since = t
			}
			if limit < 0 {
				return cliconv.Usage(fmt.Errorf("--limit %d: want 0 (every run) or more", limit))
			}
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
			var all []reporter.RunSummary
			list := runList{Runs: []runRow{}}
			for _, f := range folds {
				if !f.Exists() {
					list.DeadLetterOnly++
					continue
				}
				if s := f.Summary(); filter.Match(s) && (!waitingOnly || waiting(f.State)) {
					all = append(all, s)
				}
			}
			reporter.SortRuns(all)
			for _, r := range filter.Page(all) {
				row := runRow{RunSummary: r}
				if st := folds[r.RunID].State; waiting(st) {
					row.WaitingFor, row.WaitingUntil, row.Expires = st.WaitingFor, st.WaitingUntil, st.WaitingDeadline
				}
				list.Runs = append(list.Runs, row)
			}
			return render(g.out, format, list, func() error {
				var t table
				t.row("RUN", "STATUS", "WAITING FOR", "CHANGE", "TITLE", "STARTED")
				for _, r := range list.Runs {
					t.row(r.RunID, string(r.Status), g.waitingText(r), r.ChangeID, r.Title, g.clock(r.Started, isoSeconds))
				}
				switch {
				case len(folds) == list.DeadLetterOnly:
					t.row("(no runs yet: submit one with `runbook submit PLAN`)")
				case len(list.Runs) == 0 && waitingOnly:
					t.row("(no run is waiting)")
				case len(list.Runs) == 0:
					t.row("(no run matches)")
				}
				if err := t.write(g.out); err != nil {
					return err
				}
				if list.DeadLetterOnly > 0 {
					fmt.Fprintf(g.out, "\n%d run id(s) hold dead-lettered messages only: no runs (their dead letters: GET /api/v1/dead-letters)\n", list.DeadLetterOnly)
				}
				return nil
			})
		},
	}
	f := c.Flags()
	f.BoolVar(&waitingOnly, "waiting", false, "list only the runs waiting for approval or for their change window")
	f.StringVar(&status, "status", "", "list only the runs with this status (e.g. ROLLED_BACK, any case)")
	f.StringVar(&since, "since", "", "list only the runs started since this time: RFC 3339 (2026-01-02T15:04:05Z) or a duration back from now (24h)")
	f.IntVar(&limit, "limit", 0, "list at most this many runs, the newest (0: every run)")
	_ = c.RegisterFlagCompletionFunc("status", completeStatus)
	outputFlag(c, &format, formatTable, "one line per run")
	return c
}

// runList is runs' output as data (-o json|yaml): the read API's run
// summaries, with what a waiting run waits for.
type runList struct {
	Runs []runRow `json:"runs"`
	// DeadLetterOnly counts run ids that hold dead-lettered messages only.
	DeadLetterOnly int `json:"dead_letter_only_run_ids,omitempty"`
}

type runRow struct {
	reporter.RunSummary
	// WaitingFor are the roles still to approve, or "window" (gate.WindowRole).
	WaitingFor   []string  `json:"waiting_for,omitempty"`
	WaitingUntil time.Time `json:"waiting_until,omitzero"`
	Expires      time.Time `json:"expires,omitzero"`
}

// waiting reports whether the run is held at the gate.
func waiting(st *runstate.State) bool {
	return len(st.WaitingFor) > 0 && (st.Status == runstate.AwaitingApproval || st.Status == runstate.WaitingWindow)
}

// parseSince reads --since: an RFC 3339 time, or a duration back from now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z or a duration back from now such as 24h", s)
}

// waitingText is the WAITING FOR column: "-" when the run does not wait.
func (g *globals) waitingText(r runRow) string {
	if len(r.WaitingFor) == 0 {
		return "-"
	}
	var s string
	if r.WaitingFor[0] == gate.WindowRole {
		s = "window until " + g.clock(r.WaitingUntil, isoSeconds)
	} else {
		s = "approval: " + strings.Join(r.WaitingFor, ", ")
		if !r.WaitingUntil.IsZero() {
			s += "; window " + g.clock(r.WaitingUntil, isoSeconds)
		}
	}
	if !r.Expires.IsZero() {
		s += "; expires " + g.clock(r.Expires, isoSeconds)
	}
	return s
}

func reportCmd(g *globals) *cobra.Command {
	var asJSON bool
	var format, output string
	c := &cobra.Command{
		Use:   "report RUN",
		Short: "Print a run's 12-line QC summary, its report JSON or a Markdown report",
		Long: `report prints the report the reporter published for RUN (report.ready):
--format summary (default) the 12-line QC summary, json the full report JSON
(the same bytes as <reports-dir>/RUN-report.json), markdown a readable report
with the QC summary and tables of tests, issues, approvals, rollback and
recommendations. --json is --format json. The summary and the Markdown also
link the runs it reverts or that revert it (runbook revert); the JSON is the
report as published, which a later revert does not change.

-o json is --format json; -o yaml prints the same report as YAML; -o table
(the default) prints --format summary or markdown.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeRunID,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(output); err != nil {
				return err
			}
			if asJSON {
				if cmd.Flags().Changed("format") && format != "json" {
					return cliconv.Usage(fmt.Errorf("--json and --format %s contradict each other", format))
				}
				format = "json"
			}
			switch format {
			case "summary", "json", "markdown":
			default:
				return cliconv.Usage(fmt.Errorf("--format %q: want summary, json or markdown", format))
			}
			if output != formatTable {
				if (cmd.Flags().Changed("format") || asJSON) && format != output {
					return cliconv.Usage(fmt.Errorf("-o %s and --format %s contradict each other", output, format))
				}
				format = output
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
				return &exitError{exitNoReport, fmt.Errorf("run %s has no report yet (follow it with `runbook watch %s`)", args[0], args[0])}
			}
			rr := e.Event.GetReportReady()
			switch format {
			case formatJSON:
				fmt.Fprintln(g.out, rr.GetReportJson())
				return nil
			case formatYAML:
				return writeJSONAsYAML(g.out, []byte(rr.GetReportJson()))
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
	_ = c.RegisterFlagCompletionFunc("format", fixedCompletions("summary", "json", "markdown"))
	outputFlag(c, &output, formatTable, "--format's summary or markdown")
	return c
}
