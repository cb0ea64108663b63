package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// On a 3-node cluster with R3 streams, the audit stream's leader is killed
// while events are published: every event is stored exactly once (the
// publisher retries what was not acknowledged; Nats-Msg-Id drops the
// duplicates a retry of an acknowledged-but-unanswered publish makes), a
// new leader takes over, and the killed node catches up when it returns.
func TestR3StreamsSurviveTheLeadersLoss(t *testing.T) {
	t.Parallel()
	c := natstest.NewCluster(t, 3)
	nc := c.Conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bus, err := eventbus.NewBus(ctx, nc, eventbus.Options{Source: "test", Provision: true, Streams: eventbus.StreamOptions{Replicas: 3}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := bus.JetStream().Stream(ctx, eventbus.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	if r := info.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("audit stream replicas %d, want 3", r)
	}
	// A second process's bus reads histories from its in-memory cache,
	// which must follow the stream through the leader's loss.
	cbus, err := eventbus.NewBus(ctx, c.Conn(t), eventbus.Options{Source: "cached"})
	if err != nil {
		t.Fatal(err)
	}
	cache := startCache(t, cbus, eventbus.HistoryCacheOptions{MaxWait: 20 * time.Second})
	var last uint64
	publishEvent := func(ev *runbookv1.Event) {
		t.Helper()
		for {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			seq, err := bus.Publish(pctx, ev)
			pcancel()
			if err == nil {
				last = max(last, seq)
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("publish %s: %v", ev.GetId(), err)
			}
		}
	}
	publish := func(run string, i int) { t.Helper(); publishEvent(deployDone(run, i)) }
	const runs, perRun = 5, 20 // perRun: change.requested and 19 more
	for r := range runs {
		publishEvent(changeRequested(fmt.Sprintf("R%d", r)))
	}
	for i := range perRun - 1 - (perRun-1)/2 {
		for r := range runs {
			publish(fmt.Sprintf("R%d", r), i)
		}
	}
	leader := -1
	natstest.Eventually(t, 10*time.Second, "a leader of the audit stream", func() bool {
		leader = c.StreamLeader(eventbus.AuditStream)
		return leader >= 0
	})
	c.Stop(leader)
	for i := perRun - 1 - (perRun-1)/2; i < perRun-1; i++ {
		for r := range runs {
			publish(fmt.Sprintf("R%d", r), i)
		}
	}
	if nl := c.StreamLeader(eventbus.AuditStream); nl == leader || nl < 0 {
		t.Errorf("leader after the loss of n%d: %d", leader+1, nl)
	}
	for r := range runs {
		h, err := bus.RunHistory(ctx, fmt.Sprintf("R%d", r))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, e := range h {
			if seen[e.Event.GetId()] {
				t.Errorf("run R%d: %s stored twice", r, e.Event.GetId())
			}
			seen[e.Event.GetId()] = true
		}
		if len(seen) != perRun {
			t.Errorf("run R%d: %d events, want %d", r, len(seen), perRun)
		}
		ch, err := cbus.RunHistory(eventbus.AtLeast(ctx, last), fmt.Sprintf("R%d", r))
		if err != nil {
			t.Fatal(err)
		}
		if ids(ch) != ids(h) {
			t.Errorf("run R%d: the cache's history differs from the stream's\n%s\nwant\n%s", r, ids(ch), ids(h))
		}
	}
	if hits, _ := cache.Stats(); hits != runs {
		t.Errorf("%d of %d histories served from memory after the leader's loss", hits, runs)
	}
	// The killed node returns and catches up.
	c.Start(t, leader)
	natstest.Eventually(t, 30*time.Second, fmt.Sprintf("n%d catching up", leader+1), func() bool {
		if c.Node(leader) == nil {
			return false
		}
		si, err := bus.JetStream().Stream(ctx, eventbus.AuditStream)
		if err != nil {
			return false
		}
		for _, p := range si.CachedInfo().Cluster.Replicas {
			if !p.Current {
				return false
			}
		}
		return len(si.CachedInfo().Cluster.Replicas) == 2 && si.CachedInfo().State.Msgs == runs*perRun
	})
}

// From R1 to R3, as docs/operations.md says: on a cluster whose streams
// are R1 (one node holds each), `runbook provision --replicas 3`
// (EnsureStreams) updates them in place, and then the node that held the
// only copy can be lost: every event is still there, and a durable
// consumer made before the move goes on where it was. (A single server's
// data directory is not turned into a cluster node in place — nats-server
// treats its streams as orphans —: that move is a stream backup and
// restore, TestStreamBackupAndRestore in deploycheck.)
func TestMoveFromR1ToR3(t *testing.T) {
	t.Parallel()
	c := natstest.NewCluster(t, 3)
	nc := c.Conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bus, err := eventbus.NewBus(ctx, nc, eventbus.Options{Source: "before", Provision: true, Streams: eventbus.StreamOptions{Replicas: 1}})
	if err != nil {
		t.Fatal(err)
	}
	js := bus.JetStream()
	const events = 30
	for i := range events {
		if _, err := bus.Publish(ctx, deployDone("R1", i)); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, eventbus.AuditStream, jetstream.ConsumerConfig{Durable: "moved", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	take := func(cons jetstream.Consumer, n int) {
		t.Helper()
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if got != n {
			t.Fatalf("fetched %d of %d (%v)", got, n, batch.Error())
		}
	}
	take(cons, 10)
	holder := c.StreamLeader(eventbus.AuditStream)
	if holder < 0 {
		t.Fatal("no node holds the R1 audit stream")
	}

	if err := eventbus.EnsureStreams(ctx, js, eventbus.StreamOptions{Replicas: 3}); err != nil {
		t.Fatalf("provision --replicas 3: %v", err)
	}
	natstest.Eventually(t, 60*time.Second, "three current replicas of both streams", func() bool {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		for _, name := range []string{eventbus.AuditStream, eventbus.MetricsStream} {
			st, err := js.Stream(ctx, name)
			if err != nil {
				return false
			}
			in := st.CachedInfo()
			if in.Config.Replicas != 3 || in.Cluster == nil || len(in.Cluster.Replicas) != 2 {
				return false
			}
			for _, p := range in.Cluster.Replicas {
				if !p.Current {
					return false
				}
			}
		}
		return true
	})
	natstest.Eventually(t, 60*time.Second, "the consumer on three nodes", func() bool {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		in, err := cons.Info(ctx)
		if err != nil || in.Cluster == nil || len(in.Cluster.Replicas) != 2 {
			return false
		}
		for _, p := range in.Cluster.Replicas {
			if !p.Current {
				return false
			}
		}
		return true
	})
	// The node that held the only copy goes; everything is still there.
	c.Stop(holder)
	natstest.Eventually(t, 60*time.Second, fmt.Sprintf("every event readable without n%d", holder+1), func() bool {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		h, err := bus.RunHistory(ctx, "R1")
		return err == nil && len(h) == events
	})
	var state string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the consumer, last seen: %s", state)
		}
	})
	natstest.Eventually(t, 60*time.Second, fmt.Sprintf("the durable consumer without n%d", holder+1), func() bool {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		cons, err = js.Consumer(ctx, eventbus.AuditStream, "moved")
		if err != nil {
			state = err.Error()
			return false
		}
		in, err := cons.Info(ctx)
		if err != nil {
			state = err.Error()
			return false
		}
		state = fmt.Sprintf("pending %d, ack floor %d, delivered %d, cluster %+v", in.NumPending, in.AckFloor.Stream, in.Delivered.Stream, in.Cluster)
		return in.NumPending == events-10
	})
	take(cons, events-10)
}

// Many processes submitting the same run id at once on a clustered stream
// (the CLI's run ids are per second): exactly one stores it, every other
// learns it is already published — none gets the cluster's "duplicate
// message id is in process" answer as an error.
func TestPublishOnceRaceOnACluster(t *testing.T) {
	t.Parallel()
	c := natstest.NewCluster(t, 3)
	nc := c.Conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bus, err := eventbus.NewBus(ctx, nc, eventbus.Options{Source: "test", Provision: true, Streams: eventbus.StreamOptions{Replicas: 3}})
	if err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		run := fmt.Sprintf("RACE%d", round)
		const n = 20
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { _, errs[i] = bus.PublishOnce(ctx, changeRequested(run)) })
		}
		wg.Wait()
		stored := 0
		for _, err := range errs {
			switch {
			case err == nil:
				stored++
			case !errors.Is(err, eventbus.ErrAlreadyPublished):
				t.Errorf("%s: %v", run, err)
			}
		}
		if stored != 1 {
			t.Errorf("%s stored by %d publishers, want 1", run, stored)
		}
	}
}
