package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/pgstore"
	"github.com/kis-core/runbook/services/reporter/pgstore/pgtest"
	"github.com/kis-core/runbook/services/reporter/readmodeltest"
)

// The RUNBOOK stream is deleted and recreated while the PostgreSQL
// projection holds 20 events of the old one: a restarted reporter stops
// with both sequences and the way out (before, it resumed past the new
// stream's end and new runs were missing from the read API, silently).
// The way out works: replay --rebuild (Reset, Project) re-projects the new
// stream, and a reporter then goes on from there.
func TestStreamRecreatedUnderTheProjection(t *testing.T) {
	ctx := context.Background()
	store, err := pgstore.Open(ctx, pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	srv := natstest.Server(t)
	admin := natstest.Bus(t, srv, "admin")
	publishRun := func(run string, n int) { readmodeltest.PublishRun(t, admin, run, n) }
	run := func() (context.CancelFunc, chan error) {
		svc := reporter.New(natstest.Bus(t, srv, "reporter"), reporter.Options{Model: store, TestsGrace: -1, StreamCheck: 20 * time.Millisecond}, nil, nil, nil)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- svc.Run(rctx) }()
		t.Cleanup(cancel)
		return cancel, done
	}
	wait := func(done chan error) error {
		t.Helper()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("the reporter did not stop")
		}
		return nil
	}
	projected := func(want uint64) {
		t.Helper()
		natstest.Eventually(t, 15*time.Second, fmt.Sprint("position ", want), func() bool {
			pos, err := store.Position(ctx)
			return err == nil && pos == want
		})
	}

	cancel, done := run()
	publishRun("A", 20)
	projected(20)
	cancel()
	if err := wait(done); err != nil {
		t.Fatalf("reporter: %v", err)
	}

	js := admin.JetStream()
	if err := js.DeleteStream(ctx, eventbus.AuditStream); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, eventbus.AuditStreamConfig(eventbus.StreamOptions{})); err != nil {
		t.Fatal(err)
	}
	publishRun("B", 3)

	_, done = run()
	err = wait(done)
	const want = "audit stream RUNBOOK ends at sequence 3 but the read model has projected up to 20: the stream was recreated or truncated; " +
		"investigate, then run 'runbook replay --rebuild' to re-project from the stream"
	if !errors.Is(err, reporter.ErrStreamBehind) || err.Error() != want {
		t.Fatalf("restarted reporter: %v\nwant %s", err, want)
	}
	if r, err := store.Run(ctx, "B"); err != nil || r != nil {
		t.Fatalf("run B of the new stream stored: %+v %v", r, err)
	}

	// What `runbook replay --rebuild` does.
	if err := store.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if p, err := reporter.Project(ctx, admin, store, 100, nil); err != nil || p.Seq != 3 {
		t.Fatalf("rebuild: %+v %v", p, err)
	}
	_, done = run()
	publishRun("C", 2)
	projected(5)
	for _, id := range []string{"B", "C"} {
		if r, err := store.Run(ctx, id); err != nil || r == nil {
			t.Errorf("run %s after the rebuild: %+v %v", id, r, err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("the reporter stopped after the rebuild: %v", err)
	default:
	}
}
