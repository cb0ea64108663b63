package eventbus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

func changeRequested(run string) *runbookv1.Event {
	return eventbus.New(run, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		PlanYaml: "title: " + run + "\n" + strings.Repeat("# padding\n", 20), ChangeId: "CHG-" + run,
	}})
}

// ids is a history as "seq:id" lines, for comparing two reads.
func ids(h []eventbus.Envelope) string {
	var b strings.Builder
	for _, e := range h {
		fmt.Fprintf(&b, "%d:%s\n", e.Seq, e.Event.GetId())
	}
	return b.String()
}

func startCache(t *testing.T, bus *eventbus.Bus, o eventbus.HistoryCacheOptions) *eventbus.HistoryCache {
	t.Helper()
	c := eventbus.NewHistoryCache(bus, o)
	bus.UseHistory(c)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("cache: %v", err)
		}
	})
	natstest.Eventually(t, 10*time.Second, "the history cache following the stream", c.Live)
	return c
}

// The cache serves a run it holds whole from memory, the same history a
// read of the stream gives; runs older than the cache are read from the
// stream; what a caller does with what it got does not change the cache.
func TestHistoryCacheServesWholeRuns(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	pub := natstest.Bus(t, s, "writer")    // another process's bus
	cached := natstest.Bus(t, s, "reader") // this service's
	plain := natstest.Bus(t, s, "plain")   // reads the stream
	ctx := context.Background()

	if _, err := pub.Publish(ctx, changeRequested("OLD")); err != nil {
		t.Fatal(err)
	}
	c := startCache(t, cached, eventbus.HistoryCacheOptions{})
	var last uint64
	for _, ev := range []*runbookv1.Event{changeRequested("NEW"), deployDone("NEW"), deployDone("OLD"), deployDone("NEW", 2)} {
		seq, err := pub.Publish(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	for _, run := range []string{"NEW", "OLD"} {
		want, err := plain.RunHistory(ctx, run)
		if err != nil {
			t.Fatal(err)
		}
		got, err := cached.RunHistory(eventbus.AtLeast(ctx, last), run)
		if err != nil {
			t.Fatal(err)
		}
		if ids(got) != ids(want) {
			t.Errorf("run %s: cache read\n%s\nstream read\n%s", run, ids(got), ids(want))
		}
	}
	if hits, misses := c.Stats(); hits != 1 || misses != 1 {
		t.Errorf("hits %d misses %d, want 1 and 1 (NEW whole in memory, OLD began before the cache)", hits, misses)
	}

	// LastEvent reads the same way.
	for _, c := range []struct {
		run, typ string
		want     uint64
	}{{"NEW", "deploy.done", last}, {"NEW", "rollback.started", 0}, {"OLD", "deploy.done", last - 1}} {
		e, err := cached.LastEvent(eventbus.AtLeast(ctx, last), c.run, c.typ)
		if err != nil {
			t.Fatal(err)
		}
		var got uint64 // 0: none
		if e != nil {
			got = e.Seq
		}
		if got != c.want {
			t.Errorf("last %s of %s: seq %d, want %d (0: none)", c.typ, c.run, got, c.want)
		}
	}
	if hits, misses := c.Stats(); hits != 3 || misses != 2 {
		t.Errorf("after LastEvent: hits %d misses %d, want 3 and 2", hits, misses)
	}

	got, _ := cached.RunHistory(ctx, "NEW")
	got[0].Event.Source = "changed by a caller"
	got[0].Event.GetChangeRequested().Title = "changed"
	again, _ := cached.RunHistory(ctx, "NEW")
	if again[0].Event.GetSource() == "changed by a caller" || again[0].Event.GetChangeRequested().GetTitle() == "changed" {
		t.Error("a caller's change to a returned event reached the cache")
	}
}

// A read sees at least the event its caller handles, and everything its own
// bus published, however far behind the follower is.
func TestHistoryCacheReadsAtLeastWhatTheCallerSaw(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	other := natstest.Bus(t, s, "other")
	self := natstest.Bus(t, s, "self")
	startCache(t, self, eventbus.HistoryCacheOptions{})
	ctx := context.Background()
	for i := range 50 {
		run := fmt.Sprintf("R%d", i)
		seq, err := other.Publish(ctx, changeRequested(run))
		if err != nil {
			t.Fatal(err)
		}
		h, err := self.RunHistory(eventbus.AtLeast(ctx, seq), run)
		if err != nil || len(h) != 1 {
			t.Fatalf("run %s after the handled event: %d events (%v)", run, len(h), err)
		}
		if _, err := self.Publish(ctx, deployDone(run)); err != nil {
			t.Fatal(err)
		}
		if h, err = self.RunHistory(ctx, run); err != nil || len(h) != 2 {
			t.Fatalf("run %s after its own publish: %d events (%v)", run, len(h), err)
		}
	}
}

// Bounded memory: the least recently used runs are dropped and read from
// the stream after that, whole, even when later events of theirs arrive.
func TestHistoryCacheEvictsAndFallsBack(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	pub := natstest.Bus(t, s, "writer")
	cached := natstest.Bus(t, s, "reader")
	plain := natstest.Bus(t, s, "plain")
	c := startCache(t, cached, eventbus.HistoryCacheOptions{MaxBytes: 4 << 10})
	ctx := context.Background()
	const runs = 20
	var last uint64
	var evs []*runbookv1.Event
	for i := range runs {
		run := fmt.Sprintf("R%d", i)
		evs = append(evs, changeRequested(run), deployDone(run))
	}
	// A later event of a run evicted long ago: the run is not whole here.
	evs = append(evs, deployDone("R0", 2))
	for _, ev := range evs {
		seq, err := pub.Publish(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	for i := range runs {
		run := fmt.Sprintf("R%d", i)
		got, err := cached.RunHistory(eventbus.AtLeast(ctx, last), run)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := plain.RunHistory(ctx, run)
		n := 2
		if i == 0 {
			n = 3
		}
		if len(got) != n || ids(got) != ids(want) {
			t.Errorf("run %s: %d events\n%s\nwant\n%s", run, len(got), ids(got), ids(want))
		}
	}
	hits, misses := c.Stats()
	if misses == 0 || hits == 0 {
		t.Errorf("hits %d misses %d: 4 KiB should hold some runs and not all %d", hits, misses, runs)
	}
}

// A cache whose follower cannot keep up (here: has stopped) is not waited
// for past MaxWait: the read goes to the stream.
func TestHistoryCacheNotLiveReadsTheStream(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	pub := natstest.Bus(t, s, "writer")
	cached := natstest.Bus(t, s, "reader")
	c := eventbus.NewHistoryCache(cached, eventbus.HistoryCacheOptions{MaxWait: 50 * time.Millisecond})
	cached.UseHistory(c) // never started
	ctx := context.Background()
	seq, err := pub.Publish(ctx, changeRequested("R1"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := cached.RunHistory(eventbus.AtLeast(ctx, seq), "R1")
	if err != nil || len(h) != 1 {
		t.Fatalf("%d events (%v)", len(h), err)
	}
	if hits, misses := c.Stats(); hits != 0 || misses != 1 {
		t.Errorf("hits %d misses %d", hits, misses)
	}
}

// Following one run's events is served from memory — no consumer on the
// server per follower — and moves to the stream when the run is evicted,
// missing nothing.
func TestHistoryCacheFollowsARun(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	pub := natstest.Bus(t, s, "writer")
	cached := natstest.Bus(t, s, "reader")
	startCache(t, cached, eventbus.HistoryCacheOptions{MaxBytes: 8 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rollbackStarted := func(run string) *runbookv1.Event {
		return eventbus.New(run, &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{}})
	}
	consumers := func() int {
		st, err := cached.JetStream().Stream(ctx, eventbus.AuditStream)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().State.Consumers
	}
	for _, evictFirst := range []bool{false, true} {
		run := fmt.Sprintf("F%v", evictFirst)
		if _, err := pub.Publish(ctx, changeRequested(run)); err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(ctx, deployDone(run)); err != nil {
			t.Fatal(err)
		}
		before := consumers()
		got := make(chan string, 4)
		done := make(chan error, 1)
		go func() {
			done <- cached.Follow(ctx, []string{eventbus.Subject(run, "rollback.started"), eventbus.Subject(run, "run.failed")}, 0, func(e eventbus.Envelope) error {
				got <- e.Event.GetType()
				return eventbus.StopFollow()
			})
		}()
		if !evictFirst {
			if n := consumers(); n != before {
				t.Errorf("following %s made %d consumer(s) on the server", run, n-before)
			}
		} else {
			for i := range 40 { // push the run out of 8 KiB
				if _, err := pub.Publish(ctx, changeRequested(fmt.Sprintf("X%d", i))); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := pub.Publish(ctx, rollbackStarted(run)); err != nil {
			t.Fatal(err)
		}
		select {
		case typ := <-got:
			if typ != "rollback.started" {
				t.Errorf("%s: followed %s", run, typ)
			}
		case <-ctx.Done():
			t.Fatalf("%s: rollback.started never reached the follower", run)
		}
		if err := <-done; err != nil {
			t.Errorf("%s: Follow: %v", run, err)
		}
	}
}
