// Package readmodeltest is the suite every reporter.ReadModel must pass: the
// in-memory model today, the PostgreSQL one later (one suite, several
// implementations).
package readmodeltest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
)

var t0 = time.Date(2025, 9, 22, 14, 30, 0, 0, time.UTC)

func env(runID string, at time.Duration, seq uint64, payload any, idParts ...any) eventbus.Envelope {
	ev := eventbus.New(runID, payload, idParts...)
	ev.Time = timestamppb.New(t0.Add(at))
	return eventbus.Envelope{Event: ev, Seq: seq, Subject: eventbus.Subject(runID, ev.Type)}
}

func requested(runID string, at time.Duration, seq uint64) eventbus.Envelope {
	return env(runID, at, seq, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-" + runID, Title: "title " + runID}})
}

func rejected(runID string, at time.Duration, seq uint64) eventbus.Envelope {
	return env(runID, at, seq, &runbookv1.Event_ChangeRejected{ChangeRejected: &runbookv1.ChangeRejected{}})
}

func reportReady(runID string, at time.Duration, seq uint64) eventbus.Envelope {
	return env(runID, at, seq, &runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{Status: "INVALID", QcSummary: "qc"}})
}

func output(runID string, at time.Duration, seq uint64, text string) eventbus.Envelope {
	return env(runID, at, seq, &runbookv1.Event_DeployStepOutput{DeployStepOutput: &runbookv1.StepOutput{Text: text}}, seq)
}

func assessed(runID string, at time.Duration, seq uint64, level string) eventbus.Envelope {
	return env(runID, at, seq, &runbookv1.Event_PlanAssessed{PlanAssessed: &runbookv1.PlanAssessed{Level: level}})
}

func deadLettered(runID string, at time.Duration, seq, original uint64, consumer string) eventbus.Envelope {
	return env(runID, at, seq, &runbookv1.Event_EventDeadLettered{EventDeadLettered: &runbookv1.DeadLettered{
		Consumer: consumer, Reason: "undecodable event", OriginalSubject: eventbus.Subject(runID, "change.requested"), OriginalSequence: original,
	}}, consumer, original)
}

// Run runs the suite; newModel returns an empty model for each case.
func Run(t *testing.T, newModel func(t *testing.T) reporter.ReadModel) {
	ctx := context.Background()
	must := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	apply := func(t *testing.T, m reporter.ReadModel, envs ...eventbus.Envelope) {
		t.Helper()
		must(t, m.ApplyBatch(ctx, 0, envs))
	}
	ids := func(runs []reporter.RunSummary) []string {
		var out []string
		for _, r := range runs {
			out = append(out, r.RunID)
		}
		return out
	}

	t.Run("a model below the expected position refuses the batch", func(t *testing.T) {
		m := newModel(t)
		apply(t, m, requested("A", 0, 1))
		// The reader believes it stored up to 3 (the model was reset, or
		// lost its last commits): storing 4 would leave 2 and 3 out.
		err := m.ApplyBatch(ctx, 3, []eventbus.Envelope{rejected("A", 2*time.Second, 4)})
		if !errors.Is(err, reporter.ErrBehind) {
			t.Fatalf("ApplyBatch expecting 3 at position 1: %v, want ErrBehind", err)
		}
		pos, err := m.Position(ctx)
		must(t, err)
		run, err := m.Run(ctx, "A")
		must(t, err)
		if pos != 1 || run == nil || run.RunSummary.Events != 1 {
			t.Errorf("refused batch stored something: position %d, run %+v", pos, run)
		}
		if seq, id, err := m.Head(ctx); err != nil || seq != 1 || id != "A/change.requested" {
			t.Errorf("head after a refused batch: %d %q %v, want 1 A/change.requested", seq, id, err)
		}
		// At or past the expected position it applies.
		must(t, m.ApplyBatch(ctx, 1, []eventbus.Envelope{output("A", time.Second, 2, "x"), rejected("A", 2*time.Second, 3)}))
		must(t, m.ApplyBatch(ctx, 1, []eventbus.Envelope{rejected("A", 2*time.Second, 3)}))
		if pos, err := m.Position(ctx); err != nil || pos != 3 {
			t.Errorf("position %d, %v; want 3", pos, err)
		}
	})

	t.Run("a batch is applied once and moves the position", func(t *testing.T) {
		m := newModel(t)
		pos, err := m.Position(ctx)
		must(t, err)
		if pos != 0 {
			t.Fatalf("empty model at position %d", pos)
		}
		if seq, id, err := m.Head(ctx); err != nil || seq != 0 || id != "" {
			t.Errorf("head of an empty model: %d %q %v", seq, id, err)
		}
		cr, out := requested("A", 0, 1), output("A", time.Second, 2, "x")
		apply(t, m, cr, out)
		// Redelivered, and with one new event after it: only that one is new.
		apply(t, m, cr, out, rejected("A", 2*time.Second, 3))
		pos, err = m.Position(ctx)
		must(t, err)
		if pos != 3 {
			t.Errorf("position = %d, want 3", pos)
		}
		if seq, id, err := m.Head(ctx); err != nil || seq != 3 || id != "A/change.rejected" {
			t.Errorf("head: %d %q %v, want 3 A/change.rejected", seq, id, err)
		}
		run, err := m.Run(ctx, "A")
		must(t, err)
		if run == nil || len(run.Events) != 2 || run.ChangeID != "CR-A" || run.Title != "title A" || run.Events != nil && run.Events[0].Seq != 1 {
			t.Fatalf("run: %+v", run)
		}
		if run.RunSummary.Events != 3 || run.LastSeq != 3 || run.Status != runstate.Invalid || run.Phase != "REPORT" {
			t.Errorf("summary: %+v", run.RunSummary)
		}
		all, err := m.Events(ctx, "A", 0, 0)
		must(t, err)
		if len(all) != 3 || all[1].Event.GetDeployStepOutput().GetText() != "x" {
			t.Errorf("events: %v", all)
		}
		after, err := m.Events(ctx, "A", 1, 1)
		must(t, err)
		if len(after) != 1 || after[0].Seq != 2 {
			t.Errorf("events after 1, limit 1: %v", after)
		}
		if none, err := m.Events(ctx, "nope", 0, 0); err != nil || len(none) != 0 {
			t.Errorf("events of an unknown run: %v %v", none, err)
		}
	})

	t.Run("a reporter stops when the audit stream no longer holds what it projected", func(t *testing.T) {
		streamBehind(t, newModel(t))
	})

	t.Run("unknown run", func(t *testing.T) {
		run, err := newModel(t).Run(ctx, "nope")
		must(t, err)
		if run != nil {
			t.Errorf("got %+v", run)
		}
	})

	t.Run("final runs are unreported until report.ready", func(t *testing.T) {
		m := newModel(t)
		apply(t, m, requested("A", 0, 1), requested("B", time.Second, 2), rejected("A", 2*time.Second, 3))
		got, err := m.Unreported(ctx)
		must(t, err)
		if !slices.Equal(got, []string{"A"}) {
			t.Errorf("unreported: %v", got)
		}
		apply(t, m, reportReady("A", 3*time.Second, 4))
		got, err = m.Unreported(ctx)
		must(t, err)
		if len(got) != 0 {
			t.Errorf("unreported after report.ready: %v", got)
		}
		run, err := m.Run(ctx, "A")
		must(t, err)
		if run.Report == nil || run.Report.GetQcSummary() != "qc" || !run.State.ReportReady || !run.Reported || !run.Ended.Equal(t0.Add(2*time.Second)) {
			t.Errorf("reported run: %+v", run)
		}
	})

	t.Run("dead letters make no run and are listed", func(t *testing.T) {
		m := newModel(t)
		// G's change.requested (2) never decoded: only its dead letter is
		// stored. U's decoded (4) but both its consumers refused it (an
		// unsigned request). A is a run; a dead letter of it (7) leaves it.
		apply(t, m, requested("A", 0, 1), deadLettered("G", time.Second, 3, 2, "preflight"), requested("U", 2*time.Second, 4))
		runs, err := m.Runs(ctx, reporter.RunFilter{})
		must(t, err)
		if got := ids(runs); !slices.Equal(got, []string{"U", "A"}) {
			t.Fatalf("runs before U is refused: %v, want [U A]", got)
		}
		apply(t, m, deadLettered("U", 3*time.Second, 5, 4, "preflight"), deadLettered("U", 3*time.Second, 6, 4, "monitor"),
			deadLettered("A", 4*time.Second, 8, 7, "deployer"))
		runs, err = m.Runs(ctx, reporter.RunFilter{})
		must(t, err)
		if got := ids(runs); !slices.Equal(got, []string{"A"}) {
			t.Fatalf("runs: %v, want [A] only", got)
		}
		for _, id := range []string{"G", "U"} {
			if run, err := m.Run(ctx, id); err != nil || run != nil {
				t.Errorf("Run(%s) = %+v, %v; want no run", id, run, err)
			}
			if evs, err := m.Events(ctx, id, 0, 0); err != nil || len(evs) == 0 {
				t.Errorf("events of %s: %v %v; want them stored", id, evs, err)
			}
		}
		if got, err := m.Unreported(ctx); err != nil || len(got) != 0 {
			t.Errorf("unreported: %v %v", got, err)
		}
		dead, err := m.DeadLetters(ctx, 0)
		must(t, err)
		var seqs []uint64
		for _, d := range dead {
			seqs = append(seqs, d.Seq)
		}
		if !slices.Equal(seqs, []uint64{8, 6, 5, 3}) || dead[3].Event.GetEventDeadLettered().GetConsumer() != "preflight" {
			t.Errorf("dead letters: sequences %v, want [8 6 5 3]", seqs)
		}
		if two, err := m.DeadLetters(ctx, 2); err != nil || len(two) != 2 || two[0].Seq != 8 {
			t.Errorf("two newest dead letters: %v %v", two, err)
		}
	})

	t.Run("runs newest first, filtered and paged", func(t *testing.T) {
		m := newModel(t)
		// B's first event is a later one; its change.requested sets the start.
		apply(t, m, rejected("B", 5*time.Second, 1), requested("A", time.Second, 2), requested("B", 2*time.Second, 3),
			requested("C", 2*time.Second, 4), assessed("C", 3*time.Second, 5, "HIGH"))
		runs, err := m.Runs(ctx, reporter.RunFilter{})
		must(t, err)
		if got := ids(runs); !slices.Equal(got, []string{"B", "C", "A"}) {
			t.Fatalf("order: %v", got)
		}
		if !runs[0].Started.Equal(t0.Add(2*time.Second)) || runs[0].Status != runstate.Invalid || !runs[0].Ended.Equal(t0.Add(5*time.Second)) {
			t.Errorf("B: %+v", runs[0])
		}
		if !runs[1].Ended.IsZero() || runs[1].RiskLevel != "HIGH" || runs[1].Phase != "PRE-FLIGHT" || runs[1].Status != runstate.Submitted {
			t.Errorf("C: %+v", runs[1])
		}
		for _, c := range []struct {
			name string
			f    reporter.RunFilter
			want []string
		}{
			{"status", reporter.RunFilter{Status: runstate.Invalid}, []string{"B"}},
			{"change id", reporter.RunFilter{ChangeID: "CR-A"}, []string{"A"}},
			{"since", reporter.RunFilter{Since: t0.Add(2 * time.Second)}, []string{"B", "C"}},
			{"until", reporter.RunFilter{Until: t0.Add(2 * time.Second)}, []string{"A"}},
			{"limit", reporter.RunFilter{Limit: 2}, []string{"B", "C"}},
			{"offset", reporter.RunFilter{Limit: 2, Offset: 2}, []string{"A"}},
			{"past the end", reporter.RunFilter{Offset: 5}, nil},
		} {
			runs, err := m.Runs(ctx, c.f)
			must(t, err)
			if got := ids(runs); !slices.Equal(got, c.want) {
				t.Errorf("%s: %v, want %v", c.name, got, c.want)
			}
		}
	})
}
