package eventbus_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

func deployDone(run string, parts ...any) *runbookv1.Event {
	return eventbus.New(run, &runbookv1.Event_DeployDone{DeployDone: &runbookv1.DeployFinished{StepsSucceeded: 1}}, parts...)
}

func TestTypeOfCoversEveryPayload(t *testing.T) {
	types := eventbus.Types()
	if len(types) < 40 {
		t.Fatalf("only %d event types", len(types))
	}
	for _, want := range []string{"change.requested", "deploy.step.started", "event.dead_lettered", "test.smoke.passed", "report.ready", "rollback.step.failed"} {
		if !eventbus.KnownType(want) {
			t.Errorf("type %s unknown", want)
		}
	}
	ev := deployDone("R1")
	if ev.Type != "deploy.done" || ev.Id != "R1/deploy.done" {
		t.Fatalf("New: type %q id %q", ev.Type, ev.Id)
	}
}

func TestPublishDedupAndOnce(t *testing.T) {
	t.Parallel()
	bus := natstest.Bus(t, natstest.Server(t), "test")
	ctx := context.Background()

	s1, err := bus.Publish(ctx, deployDone("R1"))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := bus.Publish(ctx, deployDone("R1"))
	if err != nil {
		t.Fatal(err)
	}
	if s1 != s2 {
		t.Fatalf("re-published event with the same id was stored twice: seq %d and %d", s1, s2)
	}
	hist, err := bus.RunHistory(ctx, "R1")
	if err != nil || len(hist) != 1 {
		t.Fatalf("history: %d events, err %v", len(hist), err)
	}

	// At most once per run, even with a different id (another process).
	mk := func(id string) *runbookv1.Event {
		ev := eventbus.New("R2", &runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{Reason: id}})
		ev.Id = id
		return ev
	}
	if _, err := bus.PublishOnce(ctx, mk("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.PublishOnce(ctx, mk("b")); !errors.Is(err, eventbus.ErrAlreadyPublished) {
		t.Fatalf("second PublishOnce: %v, want ErrAlreadyPublished", err)
	}
	last, err := bus.LastEvent(ctx, "R2", "rollback.started")
	if err != nil || last == nil || last.Event.GetRollbackStarted().GetReason() != "a" {
		t.Fatalf("LastEvent: %+v %v", last, err)
	}
	if none, err := bus.LastEvent(ctx, "R2", "deploy.done"); err != nil || none != nil {
		t.Fatalf("LastEvent of a missing type: %+v %v", none, err)
	}
}

// PublishAfter stores an event only over the latest of its type the caller
// saw: two processes deciding on the same history cannot both act; a
// redelivery of the one stored is a duplicate, not a conflict.
func TestPublishAfterTheLatestOnly(t *testing.T) {
	t.Parallel()
	bus := natstest.Bus(t, natstest.Server(t), "test")
	ctx := context.Background()
	mk := func(by string) *runbookv1.Event {
		return eventbus.New("R3", &runbookv1.Event_RevertRequested{RevertRequested: &runbookv1.RevertRequested{ByRun: by}}, by)
	}
	s1, err := bus.PublishAfter(ctx, mk("A"), 0)
	if err != nil {
		t.Fatal(err)
	}
	// B decided on the history before A's event: refused.
	if _, err := bus.PublishAfter(ctx, mk("B"), 0); !errors.Is(err, eventbus.ErrNotLatest) {
		t.Fatalf("B over a stale history: %v, want ErrNotLatest", err)
	}
	// A again (its handler redelivered), still deciding on the old history.
	if again, err := bus.PublishAfter(ctx, mk("A"), 0); err != nil || again != s1 {
		t.Fatalf("A redelivered: seq %d, %v; want the duplicate of %d", again, err, s1)
	}
	// B having read A's event: stored.
	if _, err := bus.PublishAfter(ctx, mk("B"), s1); err != nil {
		t.Fatalf("B over the latest: %v", err)
	}
	hist, err := bus.RunHistory(ctx, "R3")
	if err != nil || len(hist) != 2 {
		t.Fatalf("history: %d events (%v), want A and B once each", len(hist), err)
	}
}

func TestStreamsHaveAuditSettings(t *testing.T) {
	t.Parallel()
	bus := natstest.Bus(t, natstest.Server(t), "test")
	st, err := bus.JetStream().Stream(context.Background(), eventbus.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if !cfg.DenyDelete || !cfg.DenyPurge || cfg.Duplicates < 2*time.Minute || cfg.Storage != jetstream.FileStorage || cfg.MaxAge != 400*24*time.Hour {
		t.Fatalf("audit stream config: %+v", cfg)
	}
	if err := st.Purge(context.Background()); err == nil {
		t.Fatal("the audit stream must refuse purges")
	}
}

func TestDecodeJSONAndRejectsMismatch(t *testing.T) {
	ev := deployDone("R9")
	data, _ := protojson.Marshal(ev)
	h := nats.Header{}
	h.Set("Content-Type", "application/json")
	got, err := eventbus.Decode("runbook.R9.deploy.done", h, data, time.Time{})
	if err != nil || got.GetDeployDone().GetStepsSucceeded() != 1 {
		t.Fatalf("json decode: %v %v", got, err)
	}
	for name, subj := range map[string]string{
		"type mismatch": "runbook.R9.deploy.failed",
		"run mismatch":  "runbook.OTHER.deploy.done",
		"bad subject":   "runbook.R9",
	} {
		if _, err := eventbus.Decode(subj, h, data, time.Time{}); !errors.Is(err, eventbus.ErrDecode) {
			t.Errorf("%s: err %v, want ErrDecode", name, err)
		}
	}
	// An event type the schema does not have, or an envelope naming
	// another type than its subject's, is no event either.
	if _, err := eventbus.Decode("runbook.R9.deploy.exploded", h, data, time.Time{}); !errors.Is(err, eventbus.ErrDecode) {
		t.Errorf("unknown type: %v", err)
	}
	renamed := deployDone("R9")
	renamed.Type = "deploy.exploded"
	rdata, _ := protojson.Marshal(renamed)
	if _, err := eventbus.Decode("runbook.R9.deploy.done", h, rdata, time.Time{}); !errors.Is(err, eventbus.ErrDecode) {
		t.Errorf("envelope type %q on deploy.done: %v", renamed.Type, err)
	}
	// An event without a time takes the stream's timestamp; one with a
	// time keeps its own.
	stored := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	timeless := deployDone("R9")
	timeless.Time = nil
	tdata, _ := protojson.Marshal(timeless)
	if got, err := eventbus.Decode("runbook.R9.deploy.done", h, tdata, stored); err != nil || !got.GetTime().AsTime().Equal(stored) {
		t.Errorf("timeless event: time %v, err %v; want the stream's %s", got.GetTime(), err, stored)
	}
	timed := deployDone("R9")
	timed.Time = timestamppb.New(stored.Add(-time.Hour))
	tdata, _ = protojson.Marshal(timed)
	if got, err := eventbus.Decode("runbook.R9.deploy.done", h, tdata, stored); err != nil || !got.GetTime().AsTime().Equal(stored.Add(-time.Hour)) {
		t.Errorf("timed event: time %v, err %v; want its own", got.GetTime(), err)
	}
	h.Set("Content-Type", "text/plain")
	if _, err := eventbus.Decode("runbook.R9.deploy.done", h, data, time.Time{}); !errors.Is(err, eventbus.ErrDecode) {
		t.Errorf("unknown content type: %v", err)
	}
}

func TestRouterAcksRetriesAndDeadLetters(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var calls sync.Map // run → *atomic.Int32
	count := func(run string) *atomic.Int32 {
		v, _ := calls.LoadOrStore(run, new(atomic.Int32))
		return v.(*atomic.Int32)
	}
	r := eventbus.NewRouter(bus, eventbus.ConsumerOptions{
		Durable: "t", MaxDeliver: 3, Backoff: []time.Duration{10 * time.Millisecond},
	}, nil, nil)
	eventbus.On(r, "deploy.done", func(ctx context.Context, ev *runbookv1.Event, p *runbookv1.DeployFinished) error {
		n := count(ev.RunId).Add(1)
		switch ev.RunId {
		case "flaky":
			if n == 1 {
				return errors.New("transient")
			}
		case "always":
			return errors.New("broken for good")
		case "perm":
			return eventbus.Permanent(errors.New("cannot ever work"))
		}
		out := eventbus.New(ev.RunId, &runbookv1.Event_TestStarted{TestStarted: &runbookv1.TestStarted{}})
		_, err := bus.Publish(ctx, out)
		return err
	})
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()

	for _, run := range []string{"ok", "flaky", "always", "perm"} {
		if _, err := bus.Publish(ctx, deployDone(run)); err != nil {
			t.Fatal(err)
		}
	}
	// A poison message: garbage bytes from a non-Go publisher.
	if _, err := bus.JetStream().Publish(ctx, "runbook.poison.deploy.done", []byte("\xff\xfenot protobuf")); err != nil {
		t.Fatal(err)
	}

	has := func(run, typ string) bool {
		e, err := bus.LastEvent(ctx, run, typ)
		return err == nil && e != nil
	}
	natstest.Eventually(t, 10*time.Second, "outcomes", func() bool {
		return has("ok", "test.started") && has("flaky", "test.started") &&
			has("always", "event.dead_lettered") && has("perm", "event.dead_lettered") && has("poison", "event.dead_lettered")
	})
	if n := count("always").Load(); n != 3 {
		t.Errorf("always-failing handler called %d times, want MaxDeliver=3", n)
	}
	if n := count("perm").Load(); n != 1 {
		t.Errorf("permanent failure retried: %d calls", n)
	}
	if n := count("flaky").Load(); n != 2 {
		t.Errorf("flaky handler called %d times, want 2", n)
	}
	dl, _ := bus.LastEvent(ctx, "poison", "event.dead_lettered")
	if d := dl.Event.GetEventDeadLettered(); d.GetConsumer() != "t" || d.GetOriginalSubject() != "runbook.poison.deploy.done" || d.GetOriginalSequence() == 0 || string(d.GetOriginalData()) != "\xff\xfenot protobuf" {
		t.Errorf("dead letter: %+v", d)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestRouterHeartbeatsLongWork(t *testing.T) {
	t.Parallel()
	bus := natstest.Bus(t, natstest.Server(t), "test")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	r := eventbus.NewRouter(bus, eventbus.ConsumerOptions{Durable: "slow", AckWait: 300 * time.Millisecond}, nil, nil)
	eventbus.On(r, "deploy.done", func(ctx context.Context, ev *runbookv1.Event, _ *runbookv1.DeployFinished) error {
		calls.Add(1)
		select { // work for 4 × AckWait: without heartbeats it would be redelivered
		case <-time.After(1200 * time.Millisecond):
		case <-ctx.Done():
		}
		_, err := bus.Publish(ctx, eventbus.New(ev.RunId, &runbookv1.Event_TestStarted{TestStarted: &runbookv1.TestStarted{}}))
		return err
	})
	go func() { _ = r.Run(ctx) }()
	if _, err := bus.Publish(ctx, deployDone("long")); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, "long work done", func() bool {
		e, _ := bus.LastEvent(ctx, "long", "test.started")
		return e != nil
	})
	if n := calls.Load(); n != 1 {
		t.Fatalf("long handler ran %d times: the message was redelivered while being worked on", n)
	}
}

func TestFollowAndScan(t *testing.T) {
	t.Parallel()
	bus := natstest.Bus(t, natstest.Server(t), "test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		if _, err := bus.Publish(ctx, deployDone("F", i)); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	if err := bus.Scan(ctx, []string{eventbus.RunSubjects("F")}, 0, func(eventbus.Envelope) error { n++; return nil }); err != nil || n != 3 {
		t.Fatalf("scan: %d events, %v", n, err)
	}
	// A finished scan leaves no consumer behind: polling RunHistory must
	// not pile them up to the server's limit.
	for range 20 {
		if h, err := bus.RunHistory(ctx, "F"); err != nil || len(h) != 3 {
			t.Fatalf("history: %d events, %v", len(h), err)
		}
	}
	st, err := bus.JetStream().Stream(ctx, eventbus.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	left := 0
	for range st.ListConsumers(ctx).Info() {
		left++
	}
	if left != 0 {
		t.Errorf("%d consumers left behind by 21 scans", left)
	}
	go func() {
		_, _ = bus.Publish(ctx, eventbus.New("F", &runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{Status: "SUCCESS"}}))
	}()
	var got []string
	err = bus.Follow(ctx, []string{eventbus.RunSubjects("F")}, 0, func(e eventbus.Envelope) error {
		got = append(got, e.Event.Type)
		if e.Event.Type == "report.ready" {
			return eventbus.StopFollow()
		}
		return nil
	})
	if err != nil || len(got) != 4 {
		t.Fatalf("follow: %v %v", got, err)
	}
}

// The machine's own NATS is Debian's 2.9: the refusal must be one clear line.
func TestConnectRefusesOldServer(t *testing.T) {
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.Timeout(time.Second))
	if err != nil {
		t.Skipf("no NATS on 127.0.0.1:4222 to try: %v", err)
	}
	v := nc.ConnectedServerVersion()
	nc.Close()
	_, err = eventbus.Connect("nats://127.0.0.1:4222", "test")
	if eventbus.CheckServerVersion(v) == nil {
		if err != nil {
			t.Fatalf("server %s is new enough but Connect failed: %v", v, err)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), v) || !strings.Contains(err.Error(), eventbus.MinServerVersion) {
		t.Fatalf("old server %s: error %v should name both versions", v, err)
	}
}

func TestServerVersionCheck(t *testing.T) {
	for v, ok := range map[string]bool{"2.9.25": false, "2.10.0": true, "2.15.2": true, "v2.10.22-RC.1": true, "1.4.1": false} {
		if err := eventbus.CheckServerVersion(v); (err == nil) != ok {
			t.Errorf("%s: %v", v, err)
		}
	}
}

func TestEnsureStreamsIsIdempotentAndUpdates(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	ctx := context.Background()
	js := bus.JetStream()
	st, _ := js.Stream(ctx, eventbus.AuditStream)
	created := st.CachedInfo().Created
	if err := eventbus.EnsureStreams(ctx, js, eventbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	// A changed setting is applied to the existing stream.
	if err := eventbus.EnsureStreams(ctx, js, eventbus.StreamOptions{AuditMaxAge: 30 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	st, _ = js.Stream(ctx, eventbus.AuditStream)
	if st.CachedInfo().Config.MaxAge != 30*24*time.Hour || !st.CachedInfo().Created.Equal(created) {
		t.Fatalf("update not applied in place: %+v", st.CachedInfo().Config)
	}
}

// A service stopped while its consumer is being created stops cleanly:
// `runbook serve` cancelled during start-up must not exit with an error.
func TestRouterStoppedWhileStarting(t *testing.T) {
	t.Parallel()
	bus := natstest.Bus(t, natstest.Server(t), "test")
	r := eventbus.NewRouter(bus, eventbus.ConsumerOptions{Durable: "starting"}, nil, nil)
	r.Handle("deploy.done", func(context.Context, *runbookv1.Event) error { return nil })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Run(ctx); err != nil {
		t.Fatalf("Run on a cancelled context: %v, want nil", err)
	}
}
