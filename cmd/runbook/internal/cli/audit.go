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
		Long: `verify reads the whole audit stream and the reporter's PostgreSQL database
(--database-url, env RUNBOOK_DATABASE_URL): every event of the stream must be
stored once with an equal payload, nothing else stored, and every stored report
equal byte for byte to the run's report.ready and to the report re-derived from
the run's events. Each mismatch is printed as "run R event E: problem"; the exit
code is 1 when there is any.`,
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
			var stream []eventbus.Envelope
			err = bus.Scan(ctx, []string{eventbus.SubjectPrefix + ".>"}, 0, func(env eventbus.Envelope) error {
				stream = append(stream, env)
				return nil
			})
			if err != nil {
				return &exitError{2, fmt.Errorf("read the audit stream: %w", err)}
			}
			ms, err := store.Verify(ctx, stream)
			if err != nil {
				return &exitError{2, err}
			}
			for _, m := range ms {
				fmt.Fprintln(g.out, m.String())
			}
			if len(ms) > 0 {
				return &exitError{1, fmt.Errorf("audit: %d mismatches between the stream and the database", len(ms))}
			}
			fmt.Fprintf(g.out, "audit ok: %d events stored once and unchanged, every report re-derived\n", len(stream))
			return nil
		},
	}
	verify.Flags().StringVar(&dbURL, "database-url", envOr("RUNBOOK_DATABASE_URL", ""), "PostgreSQL database of the reporter (env RUNBOOK_DATABASE_URL)")
	c.AddCommand(verify)
	return c
}
