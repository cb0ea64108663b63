package eventbus_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// secureBus connects to s as identity name, signing what it publishes;
// admin creates the streams.
func secureBus(t *testing.T, s *natstest.Secure, name string) *eventbus.Bus {
	t.Helper()
	id, err := auth.Open(s.Store.SeedPath(name))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := eventbus.NewBus(ctx, s.ConnAs(t, name), eventbus.Options{Source: name, Signer: id.KP, Provision: name == "admin"})
	if err != nil {
		t.Fatalf("bus as %s: %v", name, err)
	}
	return b
}

func deadLetters(t *testing.T, bus *eventbus.Bus, run string) []*runbookv1.DeadLettered {
	t.Helper()
	hist, err := bus.RunHistory(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	var out []*runbookv1.DeadLettered
	for _, e := range hist {
		if d := e.Event.GetEventDeadLettered(); d != nil {
			out = append(out, d)
		}
	}
	return out
}

func foldRun(t *testing.T, bus *eventbus.Bus, run string) *runstate.State {
	t.Helper()
	hist, err := bus.RunHistory(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	s := runstate.New(run)
	for _, e := range hist {
		s.ApplyAt(e.Seq, e.Event)
	}
	return s
}

func deployStarted(run string) *runbookv1.Event {
	return eventbus.New(run, &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}})
}

// A legitimate event whose handler keeps failing is dead-lettered once
// its MaxDeliver deliveries are used, as exhausted, and its run ends FAILED
// naming it; a message the consumer refuses (an unsigned event, as a
// forged decision would be) is dead-lettered too but fails no run; garbage
// on a run's subject makes no run. Server permissions and signatures are
// real: the consumer is the deployer identity's own durable.
func TestExhaustedDeliveriesFailTheRun(t *testing.T) {
	t.Parallel()
	s := natstest.SecureServer(t)
	secureBus(t, s, "admin")
	deployer := secureBus(t, s, "deployer")
	admin := s.ConnAs(t, "admin")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var calls atomic.Int32
	r := eventbus.NewRouter(deployer, eventbus.ConsumerOptions{
		Durable: "deployer", MaxDeliver: 3, Backoff: []time.Duration{10 * time.Millisecond}, Keyring: s.Store,
	}, nil, nil)
	eventbus.On(r, "deploy.started", func(ctx context.Context, ev *runbookv1.Event, _ *runbookv1.DeployStarted) error {
		if ev.RunId == "EX1" {
			calls.Add(1)
			return errors.New("the target refuses every connection")
		}
		return nil
	})
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()

	for _, run := range []string{"EX1", "GOOD"} {
		if _, err := deployer.Publish(ctx, deployStarted(run)); err != nil {
			t.Fatal(err)
		}
	}
	// Unsigned (admin's raw connection has no signer): refused.
	data, err := eventbus.Encode(eventbus.New("GOOD", &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 9}}, "forged"))
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Publish("runbook.GOOD.deploy.started", data); err != nil {
		t.Fatal(err)
	}
	if err := admin.Publish("runbook.JUNK.deploy.started", []byte("\xff\xfenot protobuf")); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, "dead letters", func() bool {
		return len(deadLetters(t, deployer, "EX1")) == 1 && len(deadLetters(t, deployer, "GOOD")) == 1 && len(deadLetters(t, deployer, "JUNK")) == 1
	})
	if n := calls.Load(); n != 3 {
		t.Errorf("the failing handler ran %d times, want MaxDeliver = 3", n)
	}

	d := deadLetters(t, deployer, "EX1")[0]
	if !d.GetExhausted() || d.GetDeliveries() != 3 || d.GetConsumer() != "deployer" || !strings.Contains(d.GetReason(), "the target refuses every connection") {
		t.Errorf("dead letter of EX1: %+v", d)
	}
	st := foldRun(t, deployer, "EX1")
	if st.Status != runstate.Failed || !strings.Contains(st.FinalReason, "event.dead_lettered: deploy.started") || !strings.Contains(st.FinalReason, "deployer consumer gave up after 3 deliveries") {
		t.Errorf("EX1: %s %q; want FAILED naming the dead letter", st.Status, st.FinalReason)
	}

	if d := deadLetters(t, deployer, "GOOD")[0]; d.GetExhausted() || !strings.Contains(d.GetReason(), "no publisher signature") {
		t.Errorf("dead letter of the unsigned event: %+v", d)
	}
	if st := foldRun(t, deployer, "GOOD"); st.Status != runstate.Deploying {
		t.Errorf("GOOD: %s %q; an unsigned event's dead letter must not fail it", st.Status, st.FinalReason)
	}
	if d := deadLetters(t, deployer, "JUNK")[0]; d.GetExhausted() {
		t.Errorf("garbage dead-lettered as exhausted: %+v", d)
	}
	if st := foldRun(t, deployer, "JUNK"); st.Exists() || st.Status != "" {
		t.Errorf("garbage made a run: %s", st.Status)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// A message whose every delivery ends without an outcome — the process
// handling it is killed (here: its connection dropped mid-handler, so no
// heartbeat, no nak: AckWait passes) — runs out of deliveries without the
// router ever seeing a failure: JetStream's MAX_DELIVERIES advisory is the
// only word of it. Every replica still running hears it and publishes the
// dead letter; the stream keeps one, and the run ends FAILED naming it.
func TestMaxDeliveriesAdvisoryDeadLetters(t *testing.T) {
	t.Parallel()
	s := natstest.SecureServer(t)
	secureBus(t, s, "admin")
	ctx := context.Background()
	opts := eventbus.ConsumerOptions{Durable: "deployer", MaxDeliver: 2, AckWait: 600 * time.Millisecond,
		Backoff: []time.Duration{10 * time.Millisecond}, DrainTimeout: 50 * time.Millisecond, Keyring: s.Store}

	var calls atomic.Int32
	entered := make(chan string, 8)
	// replica starts a router on its own connection; kill drops the
	// connection: the handler's message is neither acked nor handed back.
	replica := func() (bus *eventbus.Bus, kill func()) {
		bus = secureBus(t, s, "deployer")
		r := eventbus.NewRouter(bus, opts, nil, nil)
		eventbus.On(r, "deploy.started", func(ctx context.Context, ev *runbookv1.Event, _ *runbookv1.DeployStarted) error {
			calls.Add(1)
			entered <- ev.RunId
			<-ctx.Done() // never an outcome
			return ctx.Err()
		})
		rctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = r.Run(rctx) }()
		t.Cleanup(func() { stop(); <-done })
		return bus, func() { bus.Conn().Close(); stop() }
	}
	await := func(what string) {
		t.Helper()
		select {
		case run := <-entered:
			if run != what {
				t.Fatalf("handler got %s, want %s", run, what)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s never reached a handler", what)
		}
	}

	bus, kill1 := replica()
	if _, err := bus.Publish(ctx, deployStarted("ADV1")); err != nil {
		t.Fatal(err)
	}
	await("ADV1")
	kill1()
	_, kill2 := replica()
	await("ADV1") // after AckWait, the second delivery: the last
	// Two more replicas pull while the second one holds it.
	survivor, _ := replica()
	replica()
	cons, err := survivor.JetStream().Consumer(ctx, eventbus.AuditStream, "deployer")
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, "three replicas pulling", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumWaiting >= 3
	})
	kill2()
	natstest.Eventually(t, 10*time.Second, "the dead letter", func() bool { return len(deadLetters(t, survivor, "ADV1")) > 0 })
	st := foldRun(t, survivor, "ADV1")
	if st.Status != runstate.Failed || !strings.Contains(st.FinalReason, "event.dead_lettered: deploy.started") || !strings.Contains(st.FinalReason, "no outcome") {
		t.Errorf("ADV1: %s %q; want FAILED naming the dead letter", st.Status, st.FinalReason)
	}
	// A later message reaches a handler: both survivors' dead letters of
	// ADV1 are stored by now, or deduplicated.
	if _, err := survivor.Publish(ctx, deployStarted("ADV2")); err != nil {
		t.Fatal(err)
	}
	await("ADV2")
	if n := calls.Load(); n != 3 {
		t.Errorf("handler ran %d times, want 3: an exhausted message was delivered again", n)
	}
	dls := deadLetters(t, survivor, "ADV1")
	if len(dls) != 1 || !dls[0].GetExhausted() || dls[0].GetDeliveries() != 2 || dls[0].GetConsumer() != "deployer" {
		t.Fatalf("dead letters of ADV1: %+v; want one, exhausted after 2 deliveries", dls)
	}
}

// A router shut down while its handler works on the message's last
// delivery records the dead letter itself: JetStream will not deliver it
// again, and its advisory would reach only the replicas still running.
func TestShutdownInLastDeliveryDeadLetters(t *testing.T) {
	t.Parallel()
	bus := natstest.Bus(t, natstest.Server(t), "test")
	ctx, stop := context.WithCancel(context.Background())
	r := eventbus.NewRouter(bus, eventbus.ConsumerOptions{Durable: "t", MaxDeliver: 1, DrainTimeout: 20 * time.Millisecond}, nil, nil)
	entered := make(chan struct{})
	eventbus.On(r, "deploy.started", func(ctx context.Context, ev *runbookv1.Event, _ *runbookv1.DeployStarted) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	})
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	if _, err := bus.Publish(context.Background(), deployStarted("SD1")); err != nil {
		t.Fatal(err)
	}
	<-entered
	stop()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	dls := deadLetters(t, bus, "SD1")
	if len(dls) != 1 || !dls[0].GetExhausted() || !strings.Contains(dls[0].GetReason(), "interrupted by a shutdown") {
		t.Fatalf("dead letters: %+v; want one, exhausted, interrupted by a shutdown", dls)
	}
	if st := foldRun(t, bus, "SD1"); st.Status != runstate.Failed {
		t.Fatalf("SD1: %s; want FAILED", st.Status)
	}
}

// staleKeyring is a real keyring file whose RecentKeyring stays the
// keyring as it was when the test began: what a consumer holds for up to
// auth.KeyringRecheck after an identity is created.
type staleKeyring struct {
	*auth.KeyringFile
	then *trust.Keyring
}

func (k staleKeyring) RecentKeyring() (*trust.Keyring, error) { return k.then, nil }

// A consumer that reads the keyring through its recent copy still accepts
// an identity created since: it looks at the file again before refusing a
// key it does not know.
func TestRouterAcceptsAnIdentityCreatedSinceItsKeyringCopy(t *testing.T) {
	t.Parallel()
	s := natstest.SecureServer(t)
	secureBus(t, s, "admin")
	kf := auth.NewKeyringFile(s.Store.KeyringPath())
	then, err := kf.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Store.Create("deployer-b", trust.Deployer, ""); err != nil {
		t.Fatal(err)
	}
	s.Reload(t)
	late := secureBus(t, s, "deployer-b")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handled sync.Map
	r := eventbus.NewRouter(late, eventbus.ConsumerOptions{
		Durable: "deployer", Backoff: []time.Duration{10 * time.Millisecond}, Keyring: staleKeyring{kf, then},
	}, nil, nil)
	eventbus.On(r, "deploy.started", func(ctx context.Context, ev *runbookv1.Event, _ *runbookv1.DeployStarted) error {
		handled.Store(ev.RunId, true)
		return nil
	})
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	if _, err := late.Publish(ctx, deployStarted("LATE")); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 10*time.Second, "the new identity's event handled", func() bool {
		_, ok := handled.Load("LATE")
		return ok
	})
	if d := deadLetters(t, late, "LATE"); len(d) != 0 {
		t.Fatalf("the new identity's event was dead-lettered: %+v", d)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
