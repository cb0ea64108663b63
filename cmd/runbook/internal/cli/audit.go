package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/reporter/pgstore"
)

func auditCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "Check the stored history against the audit stream",
	}
	var dbURL, keyringPath string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check that PostgreSQL holds every stream event once, unchanged, and every report as derived",
		Long: `verify reads the whole audit stream side by side with the reporter's PostgreSQL
database (--database-url, env RUNBOOK_DATABASE_URL) and checks that:

  - every event of the stream is stored once, at its stream sequence, under its
    run, with an equal payload, and nothing else is stored;
  - each run's hash chain (sha256 over its events in stream order) stored with
    every event and on the run row is the one recomputed from the stream;
  - every stored report equals the run's report.ready byte for byte and the
    report re-derived from the run's events;
  - every row of every projection table (runs, approvals, reports, events'
    columns, projection_state) holds what the projection's fold of the
    stream gives: an edited status, approver, actor or time is named as
    "table T, row KEY, column C: stored X, the stream gives Y".

With the keyring (--keyring, env RUNBOOK_KEYRING) it also re-checks who said
what, on the stream itself: every event signed by its publisher
(Runbook-Signer), an active identity whose role may publish its type; every
person's decision (change request, approval, rejection, cancel, rollback
request) carrying their valid signature over the run and its exact plan, no
signature replayed. Without --database-url only these checks run.

Each mismatch is printed as "run R event E (seq N): problem". The exit code is
1 when there is any, 2 when the check could not run. Run it after the reporter
has caught up (events published since it last projected are reported missing).`,
		Example: `  runbook audit verify --database-url postgres://runbook@db/runbook`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var auditor *trust.Auditor
			if keyringPath != "" {
				kr, err := auth.LoadKeyring(keyringPath)
				if err != nil {
					return &exitError{exitUsage, err}
				}
				auditor = trust.NewAuditor(kr)
			}
			if dbURL == "" && auditor == nil {
				return &exitError{exitUsage, errors.New("audit verify needs --database-url (env RUNBOOK_DATABASE_URL), --keyring (env RUNBOOK_KEYRING), or both")}
			}
			ctx := cmd.Context()
			bus, closeBus, err := g.connect(ctx)
			if err != nil {
				return &exitError{exitUsage, err}
			}
			defer closeBus()
			var trustProblems []string
			scan := func(fn func(eventbus.Envelope) error) error {
				return bus.Scan(ctx, []string{eventbus.SubjectPrefix + ".>"}, 0, func(e eventbus.Envelope) error {
					if auditor != nil {
						pub, perr := e.Publisher()
						for _, p := range auditor.Check(e.Event, pub, perr) {
							trustProblems = append(trustProblems, fmt.Sprintf("run %s event %s (seq %d): %s", e.Event.GetRunId(), e.Event.GetId(), e.Seq, p))
						}
					}
					return fn(e)
				})
			}
			var ms []pgstore.Mismatch
			var st pgstore.VerifyStats
			if dbURL != "" {
				store, err := pgstore.Connect(ctx, dbURL)
				if err != nil {
					return &exitError{exitUsage, err}
				}
				defer store.Close()
				if ms, st, err = store.Verify(ctx, scan); err != nil {
					return &exitError{exitUsage, err}
				}
			} else if err := scan(func(eventbus.Envelope) error { st.Events++; return nil }); err != nil {
				return &exitError{exitUsage, err}
			}
			for _, m := range ms {
				fmt.Fprintln(g.out, m.String())
			}
			for _, p := range trustProblems {
				fmt.Fprintln(g.out, p)
			}
			if n := len(ms) + len(trustProblems); n > 0 {
				return &exitError{exitError1, fmt.Errorf("audit: %d mismatches between the stream and the database, %d problems with who said what", len(ms), len(trustProblems))}
			}
			if auditor != nil {
				fmt.Fprintf(g.out, "signatures ok: every event signed by an identity allowed to publish it, every decision signed by its actor over its run and plan (keyring %s)\n", keyringPath)
			} else {
				fmt.Fprintln(g.out, "signatures not checked: give --keyring (env RUNBOOK_KEYRING)")
			}
			if dbURL == "" {
				fmt.Fprintf(g.out, "audit ok: %d events checked (no database given)\n", st.Events)
				return nil
			}
			fmt.Fprintf(g.out, "audit ok: %d events of %d runs stored once and unchanged, hash chains intact, %d reports re-derived, %d approvals and every projection row as the stream gives them\n", st.Events, st.Runs, st.Reports, st.Approvals)
			return nil
		},
	}
	verify.Flags().StringVar(&dbURL, "database-url", os.Getenv(svcmain.EnvDatabaseURL), "PostgreSQL database of the reporter; env "+svcmain.EnvDatabaseURL)
	verify.Flags().StringVar(&keyringPath, "keyring", os.Getenv(svcmain.EnvKeyring), "the keyring of runbook serve (<data-dir>/identities/keyring.json) to re-check every signature; env "+svcmain.EnvKeyring)
	c.AddCommand(verify)
	return c
}
