// Package readmodeltest is the suite every reporter.ReadModel must pass: the
// in-memory model today, the PostgreSQL one later (one suite, several
// implementations).
package readmodeltest

import (
	"context"
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

// Run runs the suite; newModel returns an empty model for each case.
func Run(t *testing.T, newModel func(t *testing.T) reporter.ReadModel) {
	ctx := context.Background()
	must := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	apply := func(t *testing.T, m reporter.ReadModel, e eventbus.Envelope) reporter.Applied {
		t.Helper()
		a, err := m.Apply(ctx, e)
		must(t, err)
		return a
	}

	t.Run("apply is idempotent", func(t *testing.T) {
		m := newModel(t)
		cr := requested("A", 0, 1)
		if a := apply(t, m, cr); !a.New || a.Status != runstate.Submitted {
			t.Errorf("first apply: %+v", a)
		}
		if a := apply(t, m, cr); a.New {
			t.Errorf("second apply of the same event is new: %+v", a)
		}
		run, err := m.Run(ctx, "A")
		must(t, err)
		if run == nil || len(run.Events) != 1 || run.ChangeID != "CR-A" || run.Title != "title A" {
			t.Errorf("run: %+v", run)
		}
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
		apply(t, m, requested("A", 0, 1))
		apply(t, m, requested("B", time.Second, 2))
		a := apply(t, m, rejected("A", 2*time.Second, 3))
		if a.Status != runstate.Invalid || a.ReportReady {
			t.Errorf("after change.rejected: %+v", a)
		}
		ids, err := m.Unreported(ctx)
		must(t, err)
		if !slices.Equal(ids, []string{"A"}) {
			t.Errorf("unreported: %v", ids)
		}
		if a := apply(t, m, reportReady("A", 3*time.Second, 4)); !a.ReportReady {
			t.Errorf("after report.ready: %+v", a)
		}
		ids, err = m.Unreported(ctx)
		must(t, err)
		if len(ids) != 0 {
			t.Errorf("unreported after report.ready: %v", ids)
		}
		run, err := m.Run(ctx, "A")
		must(t, err)
		if run.Report == nil || run.Report.GetQcSummary() != "qc" || !run.State.ReportReady || !run.Ended.Equal(t0.Add(2*time.Second)) {
			t.Errorf("reported run: %+v", run)
		}
	})

	t.Run("runs newest first, started at change.requested", func(t *testing.T) {
		m := newModel(t)
		// B's first event seen is a later one; its change.requested sets the start.
		apply(t, m, rejected("B", 5*time.Second, 5))
		apply(t, m, requested("A", time.Second, 1))
		apply(t, m, requested("B", 2*time.Second, 2))
		apply(t, m, requested("C", 2*time.Second, 3))
		runs, err := m.Runs(ctx)
		must(t, err)
		var ids []string
		for _, r := range runs {
			ids = append(ids, r.RunID)
		}
		if !slices.Equal(ids, []string{"B", "C", "A"}) {
			t.Errorf("order: %v", ids)
		}
		if !runs[0].Started.Equal(t0.Add(2*time.Second)) || runs[0].Status != runstate.Invalid || !runs[0].Ended.Equal(t0.Add(5*time.Second)) {
			t.Errorf("B: %+v", runs[0])
		}
		if !runs[1].Ended.IsZero() {
			t.Errorf("C is not over: %+v", runs[1])
		}
	})

	t.Run("reconcile puts events in stream order and keeps newer ones", func(t *testing.T) {
		m := newModel(t)
		cr, out, rej := requested("A", 0, 1),
			env("A", time.Second, 2, &runbookv1.Event_DeployStepOutput{DeployStepOutput: &runbookv1.StepOutput{Text: "x"}}),
			rejected("A", 2*time.Second, 3)
		// Delivered out of order, without sequences; then one event the
		// history below has not seen yet.
		for _, e := range []eventbus.Envelope{rej, cr} {
			e.Seq = 0
			apply(t, m, e)
		}
		extra := reportReady("A", 3*time.Second, 0)
		apply(t, m, extra)
		must(t, m.Reconcile(ctx, "A", []eventbus.Envelope{cr, out, rej}))
		run, err := m.Run(ctx, "A")
		must(t, err)
		var got []string
		for _, e := range run.Events {
			got = append(got, e.Event.GetType())
		}
		if !slices.Equal(got, []string{"change.requested", "change.rejected", "report.ready"}) {
			t.Errorf("events after reconcile: %v (output is not kept)", got)
		}
		if run.Events[0].Seq != 1 || run.Status != runstate.Invalid || run.Report == nil {
			t.Errorf("run after reconcile: %+v", run)
		}
		if a := apply(t, m, out); a.New {
			t.Errorf("an event of the history is new again after reconcile")
		}
	})
}
