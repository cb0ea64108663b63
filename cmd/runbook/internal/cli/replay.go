package cli

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/pgstore"
)

func replayCmd(g *globals) *cobra.Command {
	var run, dbURL string
	var rebuild bool
	var batch int
	c := &cobra.Command{
		Use:   "replay (--run RUN | --rebuild --database-url URL)",
		Short: "Print a run's timeline from the audit stream, or rebuild the PostgreSQL projection from it",
		Long: `replay reads the audit stream, the record every other view is derived from.

--run RUN prints every event of the run in stream order: its sequence, time,
offset from the first event, phase, actor and what happened (step output
included), then the status the events fold to.

--rebuild empties the reporter's PostgreSQL projection (runs, events, reports,
approvals) and projects the whole stream into it again, printing progress. The
reports it stores are the report.ready events of the stream, byte for byte.
A reporter running against the same database meanwhile is safe: both apply
the stream in order and neither stores an event twice.`,
		Example: `  runbook replay --run 20250922-143000-a1b2
  runbook replay --rebuild --database-url postgres://runbook@db/runbook`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case run == "" && !rebuild:
				return &exitError{2, errors.New("replay needs --run RUN or --rebuild")}
			case run != "" && rebuild:
				return &exitError{2, errors.New("replay takes --run or --rebuild, not both")}
			case rebuild && dbURL == "":
				return &exitError{2, errors.New("replay --rebuild needs --database-url or RUNBOOK_DATABASE_URL")}
			}
			if run != "" {
				return replayRun(cmd, g, run)
			}
			return replayRebuild(cmd, g, dbURL, batch)
		},
	}
	c.Flags().StringVar(&run, "run", "", "print this run's timeline")
	c.Flags().BoolVar(&rebuild, "rebuild", false, "drop the PostgreSQL projection and rebuild it from the stream")
	c.Flags().StringVar(&dbURL, "database-url", envOr(svcmain.EnvDatabaseURL, ""), "PostgreSQL database of the reporter, for --rebuild (env "+svcmain.EnvDatabaseURL+")")
	c.Flags().IntVar(&batch, "batch", 5000, "events stored per transaction while rebuilding")
	return c
}

// replayTextColumn is where replay prints an event's text: after
// "%6d  %s  %9s  %-10s %-18s " (sequence, time, offset, phase, actor).
const replayTextColumn = 6 + 2 + 24 + 2 + 9 + 2 + 10 + 1 + 18 + 1

func replayRun(cmd *cobra.Command, g *globals, run string) error {
	ctx := cmd.Context()
	bus, closeFn, err := g.connectRun(ctx, run)
	if err != nil {
		return err
	}
	defer closeFn()
	hist, err := bus.RunHistory(ctx, run)
	if err != nil {
		return err
	}
	var start time.Time
	st := runstate.New(run)
	for _, e := range hist {
		ev := e.Event
		t := ev.GetTime().AsTime()
		if start.IsZero() {
			start = t
		}
		phase, text := describeAt(ev, replayTextColumn)
		actor := ev.GetActor()
		if actor == "" {
			actor = ev.GetSource()
		}
		fmt.Fprintf(g.out, "%6d  %s  %9s  %-10s %-18s %s\n", e.Seq, t.UTC().Format("2006-01-02T15:04:05.000Z"),
			"+"+t.Sub(start).Truncate(time.Millisecond).String(), phase, actor, text)
		if !reporter.Noise(ev.GetType()) {
			st.Apply(ev)
		}
	}
	fmt.Fprintf(g.out, "\n%d events; status %s", len(hist), st.Status)
	if st.FinalReason != "" {
		fmt.Fprintf(g.out, " (%s)", st.FinalReason)
	}
	fmt.Fprintln(g.out)
	return nil
}

func replayRebuild(cmd *cobra.Command, g *globals, dbURL string, batch int) error {
	ctx := cmd.Context()
	bus, closeBus, err := g.connect(ctx)
	if err != nil {
		return &exitError{2, err}
	}
	defer closeBus()
	store, err := pgstore.Open(ctx, dbURL)
	if err != nil {
		return &exitError{2, err}
	}
	defer store.Close()
	if err := store.Reset(ctx); err != nil {
		return err
	}
	fmt.Fprintln(g.errOut, "projection emptied; rebuilding from the audit stream")
	last := time.Now()
	p, err := reporter.Project(ctx, bus, store, batch, func(p reporter.Progress) {
		if time.Since(last) >= 2*time.Second {
			last = time.Now()
			fmt.Fprintf(g.errOut, "  %d/%d  %.0f events/s\n", p.Seq, p.Until, p.Rate())
		}
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(g.out, "rebuilt: %d events projected up to sequence %d in %s (%.0f events/s)\n",
		p.Events, p.Seq, p.Elapsed.Round(time.Millisecond), p.Rate())
	return nil
}
