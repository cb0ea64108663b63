// Package cli holds the runbook command's subcommands. Every failure an
// operator can cause (unreachable NATS, unknown run, bad plan) ends in one
// clear line on stderr and a non-zero exit code, never a stack trace.
package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
	"github.com/kis-core/runbook/eventbus/cliconv"
	"github.com/kis-core/runbook/eventbus/svcmain"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// Exit codes of the runbook command (docs/cli.md lists them; exitCodes is
// the list it is checked against).
const (
	exitOK       = 0
	exitError1   = 1   // an error: bad plan, unreachable NATS
	exitUsage    = 2   // cliconv.ExitUsage: a usage error, or an unknown run
	exitNotOK    = 3   // the watched run ended other than SUCCESS
	exitNoReport = 4   // no report yet, or the run is not over
	exitRefused  = 5   // separation of duties: refused and recorded as approval.refused
	exitTooLate  = 6   // the run ended or its deploy started: no decision taken
	exitStopped  = 130 // interrupted while watching (the run goes on)
)

// exitCodes say what each exit code means, for docs/cli.md.
var exitCodes = []struct {
	Code    int
	Meaning string
}{
	{exitOK, "success"},
	{exitError1, "error: an invalid plan, unreachable NATS, a failed audit (one line on stderr)"},
	{exitUsage, "usage error (unknown command or flag, a flag's bad value, a missing or extra argument, a required flag not given) or an unknown run"},
	{exitNotOK, "the watched run ended other than SUCCESS"},
	{exitNoReport, "no report yet / the run is not over"},
	{exitRefused, "approval or rejection refused (separation of duties; recorded as approval.refused)"},
	{exitTooLate, "too late: the run ended, or its deploy started, so there is nothing to approve, reject, roll back or cancel"},
	{exitStopped, "interrupted while watching (the run goes on)"},
}

type globals struct {
	natsURL string
	creds   string
	tlsCA   string
	// local is --local: times in the local zone instead of UTC.
	local bool
	// as is --as (env RUNBOOK_OPERATOR) of the commands that act.
	as     string
	in     io.Reader
	out    io.Writer
	errOut io.Writer
}

// Execute runs the command line args and returns the exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return ExecuteIO(ctx, args, os.Stdin, stdout, stderr)
}

// ExecuteIO is Execute with stdin (validate - and submit - read a plan
// from it).
func ExecuteIO(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{in: stdin, out: stdout, errOut: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "runbook:", ee.err)
		}
		return ee.code
	case cliconv.IsUsage(err):
		fmt.Fprintf(stderr, "runbook: %v (see %s --help)\n", err, cmd.CommandPath())
		return exitUsage
	}
	fmt.Fprintln(stderr, "runbook:", err)
	return exitError1
}

// newRoot is the runbook command tree.
func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "runbook",
		Short: "Run production changes PRE-FLIGHT → PLAN → ACT → TEST → REPORT, audited and rolled back on their own",
		Long: `runbook turns a change plan (YAML) into an audited, observable change:
pre-flight checks and risk assessment, the deploy steps with health checks,
a watch window on the target's metrics and smoke/load tests, automatic
rollback when a gate fails, and a report with the 12-line QC summary.

Every decision is an event on the NATS JetStream stream RUNBOOK.

  runbook serve                    start NATS (embedded) and the five services
  runbook init                     write a commented plan to start from (plan.yaml)
  runbook validate plan.yaml       check a plan and print it as it will run (- reads stdin)
  runbook schema                   print the plan's JSON Schema (for editors)
  runbook submit plan.yaml --watch submit a plan and follow it live
  runbook runs [--status S] [--since 24h] [--limit N]   list runs and their status
  runbook watch RUN                follow a run
  runbook report RUN --format markdown   print a run's report (summary, json or markdown)
  runbook retro RUN                print the run's retrospective, prefilled (YAML)
  runbook audit verify --database-url URL   reconcile the stream with PostgreSQL
  runbook replay RUN               print a run's full timeline from the stream
  runbook replay --rebuild --database-url URL   rebuild the PostgreSQL projection
  runbook approve RUN --role R --as NAME   approve a run as one of its roles
  runbook reject RUN --role R --as NAME --reason TEXT   reject it
  runbook rollback RUN --reason TEXT   roll a run back (operator)
  runbook cancel RUN               stop a run (cancelled before ACT, rolled back during)
  runbook revert RUN --reason TEXT   undo a run that ended SUCCESS (a new run of its rollback steps)
  runbook version                  this binary's version, commit and Go version

Read commands (runs, report, replay, validate, retro, version) take
-o table|json|yaml. Times are UTC (ISO 8601) unless --local. Exit codes:
0 success, 1 error, 2 usage error or unknown run, 3 the watched run did not
end SUCCESS, 4 no report yet, 5 refused, 6 too late (docs/cli.md).`,
	}
	root.PersistentFlags().StringVar(&g.natsURL, "nats-url", svcmain.EnvOr(svcmain.EnvNATSURL, "nats://127.0.0.1:4222"), "NATS server of the runbook you talk to; env "+svcmain.EnvNATSURL)
	root.PersistentFlags().StringVar(&g.tlsCA, "tls-ca", os.Getenv(svcmain.EnvTLSCA), "CA certificate (PEM) that verifies the NATS server's TLS certificate; env "+svcmain.EnvTLSCA)
	root.PersistentFlags().StringVar(&g.creds, "creds", os.Getenv(svcmain.EnvCreds), "your identity: the nkey seed FILE that runbook identity create wrote; it authenticates you to NATS and signs your decisions; env "+svcmain.EnvCreds)
	root.PersistentFlags().BoolVar(&g.local, "local", false, "print times in the local time zone (with its offset) instead of UTC")
	root.AddCommand(serveCmd(g), initCmd(g), schemaCmd(g), validateCmd(g), submitCmd(g), watchCmd(g), runsCmd(g), reportCmd(g), retroCmd(g), approveCmd(g), rejectCmd(g), rollbackCmd(g), cancelCmd(g), revertCmd(g), auditCmd(g), replayCmd(g), identityCmd(g), provisionCmd(g), versionCmd(g))
	cliconv.Conventions(root, svcmain.Runbook)
	return root
}

// asFlag adds --as to a command that acts for a person.
func (g *globals) asFlag(c *cobra.Command, what string) {
	c.Flags().StringVar(&g.as, "as", os.Getenv(svcmain.EnvOperator), what+" (default: the name of your --creds identity, else $USER); env "+svcmain.EnvOperator)
}

// identity is --creds loaded (nil without).
func (g *globals) identity() (*auth.Identity, error) {
	if g.creds == "" {
		return nil, nil
	}
	id, err := auth.Open(g.creds)
	if err != nil {
		return nil, &exitError{exitUsage, err}
	}
	return id, nil
}

// dial connects to g.natsURL as the identity of --creds.
func (g *globals) dial() (*nats.Conn, error) {
	id, err := g.identity()
	if err != nil {
		return nil, err
	}
	var opts []nats.Option
	if id != nil {
		opts = id.Options()
	}
	if g.tlsCA != "" {
		topts, err := auth.ClientOptions(g.tlsCA)
		if err != nil {
			return nil, &exitError{exitUsage, err}
		}
		opts = append(opts, topts...)
	}
	nc, err := eventbus.Connect(g.natsURL, "runbook-cli", opts...)
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization") {
			if g.creds == "" {
				return nil, fmt.Errorf("%w: give your identity with --creds FILE (env RUNBOOK_CREDS); an admin makes one with `runbook identity create NAME --role ROLE`", err)
			}
			return nil, fmt.Errorf("%w: the server does not accept the key in %s (revoked, or not in its keyring)", err, g.creds)
		}
		return nil, fmt.Errorf("%w (is `runbook serve` running? set --nats-url or RUNBOOK_NATS_URL)", err)
	}
	return nc, nil
}

// connect opens a client bus on g.natsURL, as the identity of --creds;
// the bus signs the decisions it publishes with that key.
func (g *globals) connect(ctx context.Context) (*eventbus.Bus, func(), error) {
	id, err := g.identity()
	if err != nil {
		return nil, nil, err
	}
	var signer nkeys.KeyPair
	if id != nil {
		signer = id.KP
	}
	nc, err := g.dial()
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	bus, err := eventbus.NewBus(cctx, nc, eventbus.Options{Source: "cli/" + g.whoami(), Signer: signer})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return bus, nc.Close, nil
}

// whoami names the operator: --as (env RUNBOOK_OPERATOR), else the
// identity's name (the creds file is <name>.nk as `runbook identity
// create` writes it), else the login.
func (g *globals) whoami() string {
	if g.as != "" {
		return g.as
	}
	if g.creds != "" {
		return strings.TrimSuffix(filepath.Base(g.creds), filepath.Ext(g.creds))
	}
	for _, k := range []string{"USER", "LOGNAME"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "system"
}

// stdinName names a plan read from stdin (PLAN "-") in messages.
const stdinName = "<stdin>"

// readPlan reads the plan file path, or stdin for "-"; name is what
// messages call it.
func (g *globals) readPlan(path string) (name string, data []byte, err error) {
	if path == "-" {
		data, err = io.ReadAll(g.in)
		if err != nil {
			return stdinName, nil, &exitError{exitUsage, fmt.Errorf("cannot read the plan from stdin: %w", err)}
		}
		return stdinName, data, nil
	}
	data, err = os.ReadFile(path)
	if err != nil {
		return path, nil, &exitError{exitUsage, fmt.Errorf("cannot read plan: %w", err)}
	}
	return path, data, nil
}

// loadPlan reads and validates a plan (path, or "-" for stdin); it prints
// every issue to w (nil: none printed).
func (g *globals) loadPlan(path string, w io.Writer) (name string, p *plan.Plan, data []byte, issues []plan.Issue, err error) {
	name, data, err = g.readPlan(path)
	if err != nil {
		return name, nil, nil, nil, err
	}
	p, issues = plan.Parse(name, data)
	if w != nil {
		for _, i := range issues {
			fmt.Fprintln(w, issueLine(name, i))
		}
	}
	if p == nil {
		n := 0
		for _, i := range issues {
			if !i.Warning {
				n++
			}
		}
		return name, nil, data, issues, &exitError{exitError1, fmt.Errorf("%s is invalid: %d error(s) above; a plan with errors is never submitted", name, n)}
	}
	return name, p, data, issues, nil
}

// issueLine is one issue as compilers write them:
// file:line:col: error|warning: path: message (got "value"). The position
// is left out when unknown, the path when it is the file itself (syntax
// errors), the value when the message already quotes it; a long value is
// cut.
func issueLine(file string, i plan.Issue) string {
	var b strings.Builder
	b.WriteString(file)
	if i.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", i.Line, i.Column)
	}
	if i.Warning {
		b.WriteString(": warning: ")
	} else {
		b.WriteString(": error: ")
	}
	if i.Path != "" && i.Path != file {
		b.WriteString(i.Path + ": ")
	}
	b.WriteString(i.Message)
	if i.Value != "" && !strings.Contains(i.Message, strconv.Quote(i.Value)) && (len(i.Value) < 4 || !strings.Contains(i.Message, i.Value)) {
		v := i.Value
		if r := []rune(v); len(r) > 60 {
			v = string(r[:57]) + "..."
		}
		fmt.Fprintf(&b, " (got %q)", v)
	}
	return b.String()
}

// NewRunID makes a run id that reads like the seed's deployment id,
// DEPLOY-20250922-143000; a suffix is added when that second is taken.
func NewRunID(now time.Time, attempt int) string {
	id := "DEPLOY-" + now.UTC().Format("20060102-150405")
	if attempt > 0 {
		b := make([]byte, 2)
		_, _ = rand.Read(b)
		id += fmt.Sprintf("-%x", b)
	}
	return id
}

// Submit publishes change.requested for a plan and returns the run id. The
// run id is taken at most once: the stream refuses a second change.requested
// on the same subject, and another id is tried.
func Submit(ctx context.Context, bus *eventbus.Bus, source string, data []byte, p *plan.Plan, actor string) (string, error) {
	for attempt := 0; attempt < 20; attempt++ {
		run := NewRunID(time.Now(), attempt)
		ev := eventbus.New(run, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
			PlanYaml: string(data), PlanSource: source, PlanSha256: plan.Hash(data),
			ChangeId: p.ChangeRequest.ID, Title: p.ChangeRequest.Title, Requester: p.Requester.Name,
		}})
		ev.Actor = actor
		if err := bus.Sign(ev, plan.Hash(data), string(trust.Requester)); err != nil {
			return "", err
		}
		err := publishRequest(ctx, bus, ev)
		if err == nil {
			return run, nil
		}
		if !errors.Is(err, eventbus.ErrAlreadyPublished) {
			return "", err
		}
	}
	return "", errors.New("could not find a free run id after 20 attempts")
}

// publishRequest publishes change.requested once. A publish the cluster
// could not answer (a node restarting, a leader being elected) is sent
// again, the same bytes, for up to 30 s; when the stream then says the run
// id is taken, it may be by the attempt that got no answer: if the stored
// change.requested is this one (same time and signature), it is ours.
func publishRequest(ctx context.Context, bus *eventbus.Bus, ev *runbookv1.Event) error {
	deadline := time.Now().Add(30 * time.Second)
	unanswered := false
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		_, err := bus.PublishOnce(ctx, ev)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, eventbus.ErrAlreadyPublished) && unanswered:
			if stored, lerr := bus.LastEvent(ctx, ev.GetRunId(), "change.requested"); lerr == nil && stored != nil &&
				proto.Equal(stored.Event.GetTime(), ev.GetTime()) && proto.Equal(stored.Event.GetSignature(), ev.GetSignature()) {
				return nil
			}
			return err
		case !eventbus.Transient(err) || time.Now().After(deadline) || ctx.Err() != nil:
			return err
		}
		unanswered = true
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

func statusExit(status string) error {
	if status == "SUCCESS" {
		return nil
	}
	return &exitError{code: exitNotOK, err: fmt.Errorf("run ended %s", strings.ToLower(status))}
}
