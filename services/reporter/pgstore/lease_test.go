package pgstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/pgstore"
	"github.com/kis-core/runbook/services/reporter/pgstore/pgtest"
)

// leaseTimeout is the lease timeout of these tests: PostgreSQL ends a
// frozen holder's session after it (a heartbeat every third of it keeps a
// live one's, even on a busy test machine).
const leaseTimeout = 2 * time.Second

// runR is a stream of one run R: change.requested, n-2 lines of output,
// change.rejected.
func runR(n int) []eventbus.Envelope {
	t0 := time.Date(2025, 9, 22, 14, 30, 0, 0, time.UTC)
	var stream []eventbus.Envelope
	for i := range n {
		var p any = &runbookv1.Event_DeployStepOutput{DeployStepOutput: &runbookv1.StepOutput{Text: "x"}}
		switch i {
		case 0:
			p = &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-1"}}
		case n - 1:
			p = &runbookv1.Event_ChangeRejected{ChangeRejected: &runbookv1.ChangeRejected{}}
		}
		ev := eventbus.New("R", p, i)
		ev.Time = timestamppb.New(t0.Add(time.Duration(i) * time.Second))
		stream = append(stream, eventbus.Envelope{Event: ev, Seq: uint64(i + 1), Subject: eventbus.Subject("R", ev.Type)})
	}
	return stream
}

// verifyStream asserts that the database holds exactly the rows stream
// gives (pgstore's audit verify).
func verifyStream(t *testing.T, s *pgstore.Store, stream []eventbus.Envelope) {
	t.Helper()
	ms, _, err := s.Verify(context.Background(), func(fn func(eventbus.Envelope) error) error {
		for _, e := range stream {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		t.Errorf("verify: %s", m)
	}
}

// stores opens n stores (n reporter processes) on one fresh database.
func stores(t *testing.T, n int) []*pgstore.Store {
	t.Helper()
	url := pgtest.URL(t)
	var out []*pgstore.Store
	for range n {
		s, err := pgstore.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		out = append(out, s)
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Two unfenced writers (two stores, no lease: how every reporter wrote
// before, and how `replay --rebuild` still does) take turns on one
// database: A stores R's first event, B the second, A gets that batch
// again — all of it stored already — and stores a third. Every row must be
// the one the stream gives. Before, the batch A skipped whole marked its
// fold cache as current at B's position, and the third event was folded
// onto R's stale fold: wrong event count, broken hash chain (the issue's
// 203 mismatches, final=f on ended runs among them).
func TestTwoStoresTakingTurns(t *testing.T) {
	ctx := context.Background()
	ss := stores(t, 2)
	a, b := ss[0], ss[1]
	stream := runR(3)
	must(t, a.ApplyBatch(ctx, 0, stream[:1]))
	must(t, b.ApplyBatch(ctx, 0, stream[:2]))
	must(t, a.ApplyBatch(ctx, 1, stream[1:2]))
	must(t, a.ApplyBatch(ctx, 2, stream[2:]))
	verifyStream(t, a, stream)
	if r, err := a.Run(ctx, "R"); err != nil || r == nil || r.Status != "INVALID" || r.RunSummary.Events != 3 {
		t.Errorf("run R: %+v %v", r, err)
	}
}

// acquire takes s's lease in the background; the lease arrives on the channel.
func acquire(t *testing.T, s *pgstore.Store, holder string) <-chan reporter.Lease {
	ch := make(chan reporter.Lease, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		l, err := s.AcquireLease(ctx, holder, leaseTimeout, nil)
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("%s: acquire: %v", holder, err)
			}
			return
		}
		t.Cleanup(func() { l.Release(context.Background()) })
		ch <- l
	}()
	return ch
}

func wait[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: nothing after %s", what, d)
	}
	var zero T
	return zero
}

// One holder at a time: a second store stands by while the first holds
// the lease (it names the holder), takes it at once when the first
// releases it, and again at once when the holder's connection is killed
// (a crashed process), each time with a greater token; the holder whose
// lease ended stores nothing more.
func TestLeaseOneHolderAtATime(t *testing.T) {
	ctx := context.Background()
	ss := stores(t, 3)
	a, err := ss[0].AcquireLease(ctx, "A", leaseTimeout, nil)
	must(t, err)
	if _, err := ss[0].AcquireLease(ctx, "A again", leaseTimeout, nil); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("a second lease on one store: %v", err)
	}
	standby := make(chan string, 1)
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	bch := make(chan reporter.Lease, 1)
	go func() {
		l, err := ss[1].AcquireLease(bctx, "B", leaseTimeout, func(h string) { standby <- h })
		if err == nil {
			bch <- l
		}
	}()
	if h := wait(t, standby, 5*time.Second, "B standing by"); h != "A" {
		t.Errorf("B stands by for %q, want A", h)
	}
	select {
	case <-bch:
		t.Fatal("B took the lease A holds")
	case <-time.After(3 * leaseTimeout / 2): // A's heartbeat keeps it past the timeout
	}
	stream := runR(3)
	must(t, ss[0].ApplyBatch(ctx, 0, stream[:1]))

	t0 := time.Now()
	a.Release(ctx)
	b := wait(t, bch, 5*time.Second, "B after A released")
	t.Logf("B took over %s after A released", time.Since(t0).Round(time.Millisecond))
	if b.Token() <= a.Token() {
		t.Errorf("tokens: A %d, B %d", a.Token(), b.Token())
	}
	if err := ss[0].ApplyBatch(ctx, 1, stream[1:]); !errors.Is(err, reporter.ErrLeaseLost) {
		t.Errorf("A's batch after its release: %v, want ErrLeaseLost", err)
	}
	must(t, ss[1].ApplyBatch(ctx, 1, stream[1:2]))

	// B "crashes": its connections end.
	cch := acquire(t, ss[2], "C")
	t0 = time.Now()
	if _, err := ss[2].Pool().Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`); err != nil {
		t.Fatal(err)
	}
	c := wait(t, cch, 5*time.Second, "C after B's connection was killed")
	t.Logf("C took over %s after B's connection was killed", time.Since(t0).Round(time.Millisecond))
	select {
	case <-b.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("B's lease did not end with its connection")
	}
	if !errors.Is(b.Err(), reporter.ErrLeaseLost) || c.Token() <= b.Token() {
		t.Errorf("B's end: %v; tokens B %d C %d", b.Err(), b.Token(), c.Token())
	}
	if err := ss[1].ApplyBatch(ctx, 2, stream[2:]); !errors.Is(err, reporter.ErrLeaseLost) {
		t.Errorf("B's batch after losing the lease: %v, want ErrLeaseLost", err)
	}
	must(t, ss[2].ApplyBatch(ctx, 2, stream[2:]))
	verifyStream(t, ss[2], stream)
}

// A holder frozen between reading a batch and committing it (no
// heartbeat, as a SIGSTOPped process): PostgreSQL ends its lock's session
// after the lease timeout, B takes over and commits the next events, and
// when A wakes up its batch — read before B took over — is refused
// (ErrLeaseLost), inside the transaction that would have stored it.
func TestLeaseFencesAWriterFrozenBeforeItsTransaction(t *testing.T) {
	ctx := context.Background()
	ss := stores(t, 2)
	a, b := ss[0], ss[1]
	stream := runR(4)
	la, err := a.AcquireLease(ctx, "A", leaseTimeout, nil)
	must(t, err)
	must(t, a.ApplyBatch(ctx, 0, stream[:1]))
	a.PauseHeartbeatForTest(true) // A freezes, its next batch in hand
	t0 := time.Now()
	lb := wait(t, acquire(t, b, "B"), 10*leaseTimeout, "B taking over from frozen A")
	t.Logf("B took over %s after A froze", time.Since(t0).Round(time.Millisecond))
	if lb.Token() <= la.Token() {
		t.Errorf("tokens: A %d, B %d", la.Token(), lb.Token())
	}
	must(t, b.ApplyBatch(ctx, 1, stream[1:3]))
	// A wakes up and commits the batch it read.
	err = a.ApplyBatch(ctx, 1, stream[1:])
	if !errors.Is(err, reporter.ErrLeaseLost) {
		t.Fatalf("frozen A's batch after B's commit: %v, want ErrLeaseLost", err)
	}
	t.Logf("A: %v", err)
	if pos, err := b.Position(ctx); err != nil || pos != 3 {
		t.Errorf("position %d %v, want 3 (B's)", pos, err)
	}
	must(t, b.ApplyBatch(ctx, 3, stream[3:]))
	verifyStream(t, b, stream)
}

// A holder frozen inside its transaction, after its writes, before its
// commit — it holds the position's row lock: PostgreSQL ends its lock's
// session and its transaction's after the lease timeout, B takes over
// (it waited for the row lock) and commits, and A's commit fails when it
// wakes up. Nothing of A's batch is stored; B's rows are the stream's.
func TestLeaseFencesAWriterFrozenInsideItsTransaction(t *testing.T) {
	ctx := context.Background()
	ss := stores(t, 2)
	a, b := ss[0], ss[1]
	stream := runR(4)
	_, err := a.AcquireLease(ctx, "A", leaseTimeout, nil)
	must(t, err)
	must(t, a.ApplyBatch(ctx, 0, stream[:1]))
	frozen, wake := make(chan struct{}), make(chan struct{})
	a.SetBeforeCommitForTest(func() {
		close(frozen)
		<-wake
	})
	a.PauseHeartbeatForTest(true)
	aerr := make(chan error, 1)
	go func() { aerr <- a.ApplyBatch(ctx, 1, stream[1:3]) }()
	wait(t, frozen, 10*time.Second, "A inside its transaction")
	t0 := time.Now()
	wait(t, acquire(t, b, "B"), 10*leaseTimeout, "B taking over from A frozen in its transaction")
	t.Logf("B took over %s after A froze", time.Since(t0).Round(time.Millisecond))
	must(t, b.ApplyBatch(ctx, 1, stream[1:2]))
	close(wake)
	err = wait(t, aerr, 10*time.Second, "A's commit")
	if err == nil {
		t.Fatal("A committed after B took over")
	}
	t.Logf("A: %v", err)
	if pos, err := b.Position(ctx); err != nil || pos != 2 {
		t.Errorf("position %d %v, want 2 (B's)", pos, err)
	}
	must(t, b.ApplyBatch(ctx, 2, stream[2:]))
	verifyStream(t, b, stream)
}
