package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/mattn/go-runewidth"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/domain/vocab"
	"github.com/kis-core/runbook/eventbus/cliconv"
	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/pgstore"
)

func replayCmd(g *globals) *cobra.Command {
	var run, dbURL, format string
	var rebuild bool
	var batch int
	c := &cobra.Command{
		Use:   "replay (RUN | --rebuild --database-url URL)",
		Short: "Print a run's timeline from the audit stream, or rebuild the PostgreSQL projection from it",
		Long: `replay reads the audit stream, the record every other view is derived from.

replay RUN prints every event of the run in stream order: its sequence, time
(UTC unless --local), offset from the first event, phase, actor and what
happened (step output included), then the status the events fold to. -o json
or yaml prints the same as data, each event with its full payload
(protojson).

--rebuild empties the reporter's PostgreSQL projection (runs, events, reports,
approvals) and projects the whole stream into it again, printing progress. The
reports it stores are the report.ready events of the stream, byte for byte.
A reporter running against the same database meanwhile is safe: both apply
the stream in order and neither stores an event twice.`,
		Example: `  runbook replay DEPLOY-20250922-143000
  runbook replay DEPLOY-20250922-143000 -o json | jq '.events[] | select(.type == "threshold.violated")'
  runbook replay --rebuild --database-url postgres://runbook@db/runbook`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: g.completeRunID,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			if len(args) == 1 {
				if run != "" && run != args[0] {
					return cliconv.Usage(fmt.Errorf("replay %s --run %s: give the run once", args[0], run))
				}
				run = args[0]
			}
			switch {
			case run == "" && !rebuild:
				return cliconv.Usage(errors.New("replay needs a RUN or --rebuild"))
			case run != "" && rebuild:
				return cliconv.Usage(errors.New("replay takes a RUN or --rebuild, not both"))
			case rebuild && dbURL == "":
				return cliconv.Usage(errors.New("replay --rebuild needs --database-url or RUNBOOK_DATABASE_URL"))
			case rebuild && format != formatTable:
				return cliconv.Usage(fmt.Errorf("-o %s: replay --rebuild prints progress only", format))
			}
			if run != "" {
				return replayRun(cmd, g, run, format)
			}
			return replayRebuild(cmd, g, dbURL, batch)
		},
	}
	c.Flags().StringVar(&run, "run", "", "the run (deprecated: give it as the argument, replay RUN)")
	_ = c.Flags().MarkHidden("run")
	c.Flags().BoolVar(&rebuild, "rebuild", false, "drop the PostgreSQL projection and rebuild it from the stream")
	c.Flags().StringVar(&dbURL, "database-url", os.Getenv(svcmain.EnvDatabaseURL), "PostgreSQL database of the reporter, for --rebuild; env "+svcmain.EnvDatabaseURL)
	c.Flags().IntVar(&batch, "batch", 5000, "events stored per transaction while rebuilding")
	outputFlag(c, &format, formatTable, "one line per event")
	return c
}

// timeline is replay RUN's output as data (-o json|yaml).
type timeline struct {
	RunID  string          `json:"run_id"`
	Events []timelineEvent `json:"events"`
	// Status is what the events fold to (runstate), Reason why it is final.
	Status runstate.Status `json:"status"`
	Reason string          `json:"reason,omitempty"`
}

type timelineEvent struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Offset is the time since the run's first event ("1m2.5s").
	Offset string `json:"offset"`
	Type   string `json:"type"`
	Phase  string `json:"phase"`
	// Actor is the person (actor) or else the service (source).
	Actor string `json:"actor"`
	Text  string `json:"text"`
	// Event is the whole event as protojson.
	Event json.RawMessage `json:"event"`
}

func replayRun(cmd *cobra.Command, g *globals, run, format string) error {
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
	tl := timeline{RunID: run, Events: make([]timelineEvent, 0, len(hist))}
	for _, e := range hist {
		ev := e.Event
		t := ev.GetTime().AsTime()
		if start.IsZero() {
			start = t
		}
		phase, text := vocab.Describe(ev)
		actor := ev.GetActor()
		if actor == "" {
			actor = ev.GetSource()
		}
		js, err := protojson.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode event %s: %w", ev.GetId(), err)
		}
		tl.Events = append(tl.Events, timelineEvent{Seq: e.Seq, Time: t.UTC(), Offset: t.Sub(start).Truncate(time.Millisecond).String(),
			Type: ev.GetType(), Phase: phase, Actor: actor, Text: text, Event: js})
		if !reporter.Noise(ev.GetType()) {
			st.Apply(ev)
		}
	}
	tl.Status, tl.Reason = st.Status, st.FinalReason
	return render(g.out, format, tl, func() error {
		for _, e := range tl.Events {
			prefix := fmt.Sprintf("%6d  %s  %9s  %-10s %-18s ", e.Seq, g.clock(e.Time, isoMillis), "+"+e.Offset, e.Phase, e.Actor)
			// A text of several lines (step output) goes on under its first.
			fmt.Fprintf(g.out, "%s%s\n", prefix, indentLines(e.Text, runewidth.StringWidth(prefix)))
		}
		fmt.Fprintf(g.out, "\n%d events; status %s", len(tl.Events), tl.Status)
		if tl.Reason != "" {
			fmt.Fprintf(g.out, " (%s)", tl.Reason)
		}
		fmt.Fprintln(g.out)
		return nil
	})
}

func replayRebuild(cmd *cobra.Command, g *globals, dbURL string, batch int) error {
	ctx := cmd.Context()
	bus, closeBus, err := g.connect(ctx)
	if err != nil {
		return &exitError{exitUsage, err}
	}
	defer closeBus()
	store, err := pgstore.Open(ctx, dbURL)
	if err != nil {
		return &exitError{exitUsage, err}
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
