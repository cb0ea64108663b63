package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/services/reporter/pgstore"
)

func auditCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "Check the stored history against the audit stream",
	}
	var dbURL string
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

Each mismatch is printed as "run R event E (seq N): problem". The exit code is
1 when there is any, 2 when the check could not run. Run it after the reporter
has caught up (events published since it last projected are reported missing).`,
		Example: `  runbook audit verify --database-url postgres://runbook@db/runbook`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dbURL == "" {
				return &exitError{2, errors.New("audit verify needs --database-url or RUNBOOK_DATABASE_URL")}
			}
			ctx := cmd.Context()
			bus, closeBus, err := g.connect(ctx)
			if err != nil {
				return &exitError{2, err}
			}
			defer closeBus()
			store, err := pgstore.Connect(ctx, dbURL)
			if err != nil {
				return &exitError{2, err}
			}
			defer store.Close()
			ms, st, err := store.Verify(ctx, func(fn func(eventbus.Envelope) error) error {
				return bus.Scan(ctx, []string{eventbus.SubjectPrefix + ".>"}, 0, fn)
			})
			if err != nil {
				return &exitError{2, err}
			}
			for _, m := range ms {
				fmt.Fprintln(g.out, m.String())
			}
			if len(ms) > 0 {
				return &exitError{1, fmt.Errorf("audit: %d mismatches between the stream and the database", len(ms))}
			}
			fmt.Fprintf(g.out, "audit ok: %d events of %d runs stored once and unchanged, hash chains intact, %d reports re-derived, %d approvals and every projection row as the stream gives them\n", st.Events, st.Runs, st.Reports, st.Approvals)
			return nil
		},
	}
	verify.Flags().StringVar(&dbURL, "database-url", envOr("RUNBOOK_DATABASE_URL", ""), "PostgreSQL database of the reporter (env RUNBOOK_DATABASE_URL)")
	c.AddCommand(verify)
	return c
}
