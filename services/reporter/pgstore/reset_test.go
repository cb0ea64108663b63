package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/pgstore"
	"github.com/kis-core/runbook/services/reporter/pgstore/pgtest"
)

// `runbook replay --rebuild` empties the projection while a reporter runs
// against the same database and the stream goes on: the reporter, finding
// the projection behind what it stored, reads the stream again from the
// projection's position, so no event is left out (before, it stored the
// new events on the empty tables and the earlier ones were lost).
func TestResetUnderALiveReporter(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	store, err := pgstore.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	srv := natstest.Server(t)
	bus := natstest.Bus(t, srv, "test")
	svc := reporter.New(natstest.Bus(t, srv, "reporter"), reporter.Options{Model: store, RetryMin: 20 * time.Millisecond}, nil, nil, nil)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("reporter: %v", err)
		}
	}()

	var last uint64
	publishRun := func(run string, outputs int) {
		t.Helper()
		evs := []*runbookv1.Event{eventbus.New(run, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-" + run}})}
		for i := range outputs {
			evs = append(evs, eventbus.New(run, &runbookv1.Event_DeployStepOutput{DeployStepOutput: &runbookv1.StepOutput{Text: fmt.Sprint("line ", i)}}, i))
		}
		for _, ev := range evs {
			seq, err := bus.Publish(ctx, ev)
			if err != nil {
				t.Fatal(err)
			}
			last = seq
		}
	}
	projected := func(what string) {
		t.Helper()
		natstest.Eventually(t, 15*time.Second, what, func() bool {
			pos, err := store.Position(ctx)
			return err == nil && pos == last
		})
	}

	publishRun("A", 20)
	projected("run A projected")
	other, err := pgstore.Open(ctx, url) // replay --rebuild's store
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	publishRun("B", 10)
	projected("run B projected after the reset")

	if n := count(t, store, `SELECT count(*) FROM events`); n != int(last) {
		t.Errorf("%d events stored, the stream has %d", n, last)
	}
	if n := count(t, store, `SELECT count(*) FROM runs WHERE run_id = 'A' AND events = 21`); n != 1 {
		t.Errorf("run A lost events in the reset")
	}
	ms, _, err := store.Verify(ctx, func(fn func(eventbus.Envelope) error) error {
		return bus.Scan(ctx, []string{eventbus.SubjectPrefix + ".>"}, 0, fn)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		t.Errorf("audit: %v", m)
	}
}
