package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// The permission matrix (issue 11): every identity tries every operation
// against a real server with the permissions of auth.Permissions. What each
// may do comes from domain/trust's table (trust.MayPublish, trust.Durables)
// and, for JetStream's management API, from the rules of DESIGN.md "Who may
// say what": only admin touches stream configuration or deletes a durable;
// a service creates, consumes and acks only its own durable; everyone reads
// a run's history and the streams' info; everyone subscribes to the live
// alerts and its own inbox only, a service also to the MAX_DELIVERIES
// advisories of its own durable.
//
// A refusal is the server's permissions violation (-ERR), which NATS sends
// asynchronously: each connection's error handler hands it to the operation
// that published or subscribed on that subject, so a refusal is seen as soon
// as the server sends it, and an operation that works proves it (a stream
// ack, a message received, an ack acknowledged).

// opTimeout bounds one operation. Refusals and successes are both answered
// at once; only a broken expectation waits this long.
const opTimeout = 5 * time.Second

// callbackGrace is how long a violation already read from the connection
// may take to reach the error handler (its own goroutine).
const callbackGrace = 200 * time.Millisecond

// outcome is what happened to one (identity, operation) pair.
type outcome int

const (
	// refused: the server's permissions refused it.
	refused outcome = iota
	// works: it did what it asks.
	works
	// streamRefuses: the permissions let it through and the audit stream's
	// own protection (DenyPurge, DenyDelete) refused it: admin purging or
	// deleting messages of RUNBOOK.
	streamRefuses
	// failed: neither a permissions violation nor success (a bug or a timeout).
	failed
)

func (o outcome) String() string {
	return [...]string{"refused by the permissions", "works", "refused by the stream's config", "failed otherwise"}[o]
}

// violation is one permissions violation the server reported.
type violation struct {
	kind    string // "publish" or "subscribe"
	subject string
	err     error
}

var violationRe = regexp.MustCompile(`Permissions Violation for (Publish|Subscription) (?:to|with Reply of) "([^"]+)"`)

// violations collects a connection's permissions violations and hands each
// to the operations waiting for one on its subject.
type violations struct {
	mu      sync.Mutex
	all     []violation
	other   []error
	waiters map[*waiter]struct{}
}

type waiter struct {
	match func(violation) bool
	ch    chan violation
}

func (w *violations) handle(_ *nats.Conn, _ *nats.Subscription, err error) {
	m := violationRe.FindStringSubmatch(err.Error())
	w.mu.Lock()
	defer w.mu.Unlock()
	if m == nil {
		w.other = append(w.other, err)
		return
	}
	v := violation{kind: map[string]string{"Publish": "publish", "Subscription": "subscribe"}[m[1]], subject: m[2], err: err}
	w.all = append(w.all, v)
	for wt := range w.waiters {
		if wt.match(v) {
			select {
			case wt.ch <- v:
			default:
			}
		}
	}
}

// watch delivers the violations match selects from now on until stop.
func (w *violations) watch(match func(violation) bool) (<-chan violation, func()) {
	wt := &waiter{match: match, ch: make(chan violation, 1)}
	w.mu.Lock()
	if w.waiters == nil {
		w.waiters = map[*waiter]struct{}{}
	}
	w.waiters[wt] = struct{}{}
	w.mu.Unlock()
	return wt.ch, func() {
		w.mu.Lock()
		delete(w.waiters, wt)
		w.mu.Unlock()
	}
}

func (w *violations) snapshot() ([]violation, []error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.all), slices.Clone(w.other)
}

// subjectMatch is NATS subject matching: * one token, > the rest.
func subjectMatch(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(p) == len(s)
}

// actor is one identity with its own connection, reused by every operation.
type actor struct {
	name string
	role trust.Role
	pub  string
	nc   *nats.Conn
	js   jetstream.JetStream
	bus  *eventbus.Bus
	// Handles looked up once (stream info and consumer info, allowed to
	// everyone), so an operation sends only the request it is about.
	streams  map[string]jetstream.Stream
	durables map[string]jetstream.Consumer
	// acks: per durable, the reply subject of a message delivered to its
	// owner that this actor tries to ack.
	acks map[string]string
	viol *violations
}

// op is one operation of the matrix.
type op struct {
	name string
	// adminLast: admin runs it after the matrix, in the order of the list
	// (it changes or deletes what the other operations use).
	adminLast bool
	// serial: not in parallel with the others (it races its own kind).
	serial bool
	expect func(a *actor) outcome
	// owns selects the violations that are this operation's refusal.
	owns func(a *actor, v violation) bool
	do   func(ctx context.Context, a *actor) error
}

func onlyAdmin(a *actor) outcome {
	if a.role == trust.Admin {
		return works
	}
	return refused
}

func everyone(*actor) outcome { return works }

func owner(durable string) func(a *actor) outcome {
	return func(a *actor) outcome {
		if a.role == trust.Admin || slices.Contains(trust.Durables(a.role), durable) {
			return works
		}
		return refused
	}
}

// pubTo owns publish violations on subjects matching any of patterns.
func pubTo(patterns ...func(a *actor) string) func(a *actor, v violation) bool {
	return func(a *actor, v violation) bool {
		if v.kind != "publish" {
			return false
		}
		for _, p := range patterns {
			if subjectMatch(p(a), v.subject) {
				return true
			}
		}
		return false
	}
}

func fixed(s string) func(*actor) string { return func(*actor) string { return s } }

func subTo(subject func(a *actor) string) func(a *actor, v violation) bool {
	return func(a *actor, v violation) bool { return v.kind == "subscribe" && v.subject == subject(a) }
}

// runOp runs o as a and tells what happened. A refusal arrives as a
// violation on a subject o owns; an operation that returns without error
// worked; a JetStream API error is the stream answering (not a refusal).
func runOp(parent context.Context, a *actor, o op) (outcome, error) {
	ctx, cancel := context.WithTimeout(parent, opTimeout)
	defer cancel()
	vch, stop := a.viol.watch(func(v violation) bool { return o.owns(a, v) })
	defer stop()
	done := make(chan error, 1)
	go func() { done <- o.do(ctx, a) }()
	select {
	case v := <-vch:
		cancel()
		<-done
		return refused, v.err
	case err := <-done:
		if err == nil {
			return works, nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) || errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
			return streamRefuses, err // JetStream answered: the permissions let it through
		}
		// A refused request never ends before its violation arrives, but
		// an error of another step may race one: once a round trip is done
		// every violation the server sent for what came before it has been
		// read and queued for the error handler, which runs at once.
		_ = a.nc.FlushTimeout(time.Second)
		select {
		case v := <-vch:
			return refused, v.err
		case <-time.After(callbackGrace):
			return failed, err
		}
	}
}

// matrix is the server, the identities and what the operations share.
type matrix struct {
	s      *natstest.Secure
	actors []*actor
	byName map[string]*actor
	prober *nats.Conn // admin's second connection: publishes the probes subscribers wait for
	// queued: the messages put on each durable's queue; its owner takes
	// one per actor at set-up, for that actor to try to ack.
	queued int

	forbiddenRefused, allowedWorked, streamProtected atomic.Int64
}

const (
	historyRun  = "hist"
	seedSamples = 3
	queueType   = "approval.granted"
)

func durableConfig(d string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        d,
		Description:    "runbook " + d,
		FilterSubjects: []string{"runbook.q-" + d + ".>"},
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        time.Minute,
		MaxDeliver:     5,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
}

func historyEvent() *runbookv1.Event {
	return eventbus.New(historyRun, &runbookv1.Event_DeployDone{DeployDone: &runbookv1.DeployFinished{StepsSucceeded: 1}})
}

// eventTypes is every type in the table.
func eventTypes() []string {
	var out []string
	for _, r := range append(slices.Clone(trust.ServiceRoles), trust.PeopleRoles...) {
		for _, typ := range trust.Publishes(r) {
			if !slices.Contains(out, typ) {
				out = append(out, typ)
			}
		}
	}
	slices.Sort(out)
	return out
}

func setupMatrix(t *testing.T) *matrix {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := natstest.SecureServer(t)
	people := []struct {
		name string
		role trust.Role
	}{{"alice", trust.Requester}, {"bob", trust.Approver}, {"vera", trust.Viewer}, {"mallory", trust.Requester}}
	for _, p := range people {
		if _, err := s.Store.Create(p.name, p.role, ""); err != nil {
			t.Fatal(err)
		}
	}
	s.Reload(t)
	kr, err := s.Store.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	m := &matrix{s: s, byName: map[string]*actor{}, prober: s.ConnAs(t, auth.Admin)}
	names := []string{auth.Admin}
	for _, r := range trust.ServiceRoles {
		names = append(names, string(r))
	}
	names = append(names, "alice", "bob", "vera")
	for _, name := range names {
		id, ok := kr.ByName(name)
		if !ok {
			t.Fatalf("%s is not in the keyring", name)
		}
		a := &actor{name: name, role: id.Role, pub: id.PublicKey, nc: s.ConnAs(t, name), viol: &violations{},
			streams: map[string]jetstream.Stream{}, durables: map[string]jetstream.Consumer{}, acks: map[string]string{}}
		a.nc.SetErrorHandler(a.viol.handle)
		if a.js, err = jetstream.New(a.nc); err != nil {
			t.Fatal(err)
		}
		m.actors = append(m.actors, a)
		m.byName[name] = a
	}

	// Admin provisions the streams; each service creates its own durable
	// through its own connection.
	admin := m.byName[auth.Admin]
	if err := eventbus.EnsureStreams(ctx, admin.js, eventbus.StreamOptions{}); err != nil {
		t.Fatalf("admin provisions the streams: %v", err)
	}
	for _, r := range trust.ServiceRoles {
		svc := m.byName[string(r)]
		for _, d := range trust.Durables(r) {
			if _, err := svc.js.CreateOrUpdateConsumer(ctx, eventbus.AuditStream, durableConfig(d)); err != nil {
				t.Fatalf("%s creates its durable %s: %v", svc.name, d, err)
			}
		}
	}

	// What the operations read, ack and delete: a run with a real event,
	// metric samples, and messages on every durable's queue.
	adminBus, err := eventbus.NewBus(ctx, admin.nc, eventbus.Options{Source: "matrix/admin"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminBus.Publish(ctx, historyEvent()); err != nil {
		t.Fatal(err)
	}
	for i := range seedSamples {
		if err := adminBus.PublishSample(ctx, &runbookv1.MetricSample{RunId: "seed", Metric: "cpu", Value: float64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Per durable: one message per actor to ack, and spares for the fetches.
	m.queued = len(m.actors) + 4
	for _, d := range trust.AllDurables() {
		for i := range m.queued {
			if _, err := admin.js.Publish(ctx, "runbook.q-"+d+"."+queueType, fmt.Appendf(nil, "%s-%d", d, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Each service takes len(actors) messages from its durable: the
	// deliveries the actors try to ack.
	for _, r := range trust.ServiceRoles {
		svc := m.byName[string(r)]
		for _, d := range trust.Durables(r) {
			cons, err := svc.js.Consumer(ctx, eventbus.AuditStream, d)
			if err != nil {
				t.Fatal(err)
			}
			var replies []string
			for len(replies) < len(m.actors) {
				batch, err := cons.Fetch(len(m.actors)-len(replies), jetstream.FetchMaxWait(5*time.Second))
				if err != nil {
					t.Fatalf("%s fetches from its durable %s: %v", svc.name, d, err)
				}
				n := 0
				for msg := range batch.Messages() {
					replies = append(replies, msg.Reply())
					n++
				}
				if n == 0 {
					t.Fatalf("%s fetched nothing from its durable %s: %v", svc.name, d, batch.Error())
				}
			}
			for i, a := range m.actors {
				a.acks[d] = replies[i]
			}
		}
	}

	// Handles every actor may look up.
	for _, a := range m.actors {
		if a.bus, err = eventbus.NewBus(ctx, a.nc, eventbus.Options{Source: "matrix/" + a.name}); err != nil {
			t.Fatalf("%s opens the bus: %v", a.name, err)
		}
		for _, st := range []string{eventbus.AuditStream, eventbus.MetricsStream} {
			if a.streams[st], err = a.js.Stream(ctx, st); err != nil {
				t.Fatalf("%s looks up stream %s: %v", a.name, st, err)
			}
		}
		for _, d := range trust.AllDurables() {
			if a.durables[d], err = a.js.Consumer(ctx, eventbus.AuditStream, d); err != nil {
				t.Fatalf("%s looks up durable %s: %v", a.name, d, err)
			}
		}
	}
	return m
}

// probe subscribes as a, makes sure the server has the subscription, has
// the prober publish on probeSubject and waits for it: a subscription that
// works receives it.
func (m *matrix) probe(ctx context.Context, a *actor, subject, probeSubject string) error {
	sub, err := a.nc.SubscribeSync(subject)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := a.nc.FlushWithContext(ctx); err != nil {
		return err
	}
	if err := m.prober.Publish(probeSubject, []byte("probe")); err != nil {
		return err
	}
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %s on %s: %w", probeSubject, subject, err)
		}
		if msg.Subject == probeSubject {
			return nil
		}
	}
}

// other is the actor whose inbox a tries to read.
func (m *matrix) other(a *actor) *actor {
	i := slices.Index(m.actors, a)
	return m.actors[(i+1)%len(m.actors)]
}

func (m *matrix) ops() []op {
	var ops []op
	for _, typ := range eventTypes() {
		subj := func(a *actor) string { return eventbus.Subject("m-"+a.name, typ) }
		ops = append(ops, op{
			name: "publish " + typ,
			expect: func(a *actor) outcome {
				if trust.MayPublish(a.role, typ) {
					return works
				}
				return refused
			},
			owns: pubTo(subj),
			do: func(ctx context.Context, a *actor) error {
				ack, err := a.js.Publish(ctx, subj(a), []byte("matrix"))
				if err == nil && ack.Stream != eventbus.AuditStream {
					return fmt.Errorf("stored on %s", ack.Stream)
				}
				return err
			},
		})
	}
	metric := func(a *actor) string { return eventbus.MetricSubject("m-"+a.name, "cpu") }
	ops = append(ops, op{
		name: "publish metric sample",
		expect: func(a *actor) outcome {
			if a.role == trust.Monitor || a.role == trust.Admin {
				return works
			}
			return refused
		},
		owns: pubTo(metric),
		do: func(ctx context.Context, a *actor) error {
			ack, err := a.js.Publish(ctx, metric(a), []byte("1"))
			if err == nil && ack.Stream != eventbus.MetricsStream {
				return fmt.Errorf("stored on %s", ack.Stream)
			}
			return err
		},
	})

	// Reading: everyone.
	for _, st := range []string{eventbus.AuditStream, eventbus.MetricsStream} {
		ops = append(ops, op{
			name:   "stream info " + st,
			expect: everyone,
			owns:   pubTo(fixed("$JS.API.STREAM.INFO." + st)),
			do: func(ctx context.Context, a *actor) error {
				s, err := a.js.Stream(ctx, st)
				if err == nil && s.CachedInfo().Config.Name != st {
					return fmt.Errorf("info of %q", s.CachedInfo().Config.Name)
				}
				return err
			},
		})
	}
	ops = append(ops, op{
		name:   "read run history",
		expect: everyone,
		// The ordered consumer's create, info, next and delete, on any
		// consumer name but a durable's (those are other operations').
		owns: func(_ *actor, v violation) bool {
			name, ok := consumerOf(v.subject)
			return v.kind == "publish" && ok && !slices.Contains(trust.AllDurables(), name)
		},
		do: func(ctx context.Context, a *actor) error {
			hist, err := a.bus.RunHistory(ctx, historyRun)
			if err != nil {
				return err
			}
			if len(hist) != 1 || hist[0].Event.Id != historyEvent().Id {
				return fmt.Errorf("history of %s: %d events", historyRun, len(hist))
			}
			return nil
		},
	})
	ops = append(ops, op{
		name:   "read run samples",
		expect: everyone,
		owns: func(_ *actor, v violation) bool {
			return v.kind == "publish" && (subjectMatch("$JS.API.CONSUMER.*.RUNBOOK_METRICS.>", v.subject) ||
				subjectMatch("$JS.API.CONSUMER.MSG.NEXT.RUNBOOK_METRICS.*", v.subject) || v.subject == "$JS.API.STREAM.INFO.RUNBOOK_METRICS")
		},
		do: func(ctx context.Context, a *actor) error {
			samples, err := a.bus.RunSamples(ctx, "seed")
			if err == nil && len(samples) != seedSamples {
				return fmt.Errorf("%d samples of run seed, want %d", len(samples), seedSamples)
			}
			return err
		},
	})
	ops = append(ops, op{
		name:   "read last event",
		expect: everyone,
		owns:   pubTo(fixed("$JS.API.STREAM.MSG.GET.RUNBOOK"), fixed("$JS.API.DIRECT.GET.RUNBOOK"), fixed("$JS.API.DIRECT.GET.RUNBOOK.>")),
		do: func(ctx context.Context, a *actor) error {
			e, err := a.bus.LastEvent(ctx, historyRun, "deploy.done")
			if err == nil && (e == nil || e.Event.Id != historyEvent().Id) {
				return fmt.Errorf("last deploy.done of %s: %v", historyRun, e)
			}
			return err
		},
	})

	// Subscriptions.
	ops = append(ops,
		op{
			name:   "subscribe runbook.>",
			expect: onlyAdmin,
			owns:   subTo(fixed("runbook.>")),
			do: func(ctx context.Context, a *actor) error {
				return m.probe(ctx, a, "runbook.>", "runbook.probe-"+a.name+".deploy.done")
			},
		},
		op{
			name:   "subscribe runbook.*.threshold.violated",
			expect: everyone,
			owns:   subTo(fixed("runbook.*.threshold.violated")),
			do: func(ctx context.Context, a *actor) error {
				return m.probe(ctx, a, "runbook.*.threshold.violated", "runbook.probe-"+a.name+".threshold.violated")
			},
		},
		op{
			name:   "subscribe own inbox",
			expect: everyone,
			owns:   subTo(func(a *actor) string { return auth.InboxPrefix(a.pub) + ".probe" }),
			do: func(ctx context.Context, a *actor) error {
				return m.probe(ctx, a, auth.InboxPrefix(a.pub)+".probe", auth.InboxPrefix(a.pub)+".probe")
			},
		},
		op{
			name:   "subscribe another's inbox",
			expect: onlyAdmin,
			owns:   subTo(func(a *actor) string { return auth.InboxPrefix(m.other(a).pub) + ".>" }),
			do: func(ctx context.Context, a *actor) error {
				o := auth.InboxPrefix(m.other(a).pub)
				return m.probe(ctx, a, o+".>", o+".probe-"+a.name)
			},
		},
	)

	// Stream management: admin only.
	ops = append(ops, op{
		name:   "create a stream",
		expect: onlyAdmin,
		owns:   pubTo(func(a *actor) string { return "$JS.API.STREAM.CREATE.EVIL_" + strings.ToUpper(a.name) }),
		do: func(ctx context.Context, a *actor) error {
			_, err := a.js.CreateStream(ctx, jetstream.StreamConfig{
				Name: "EVIL_" + strings.ToUpper(a.name), Subjects: []string{"evil." + a.name + ".>"}, Storage: jetstream.MemoryStorage,
			})
			return err
		},
	})

	// Durables: the owner and admin create, fetch and ack; only admin
	// deletes. The same config as the owner's: an update that changes
	// nothing, as a service restarting does. The two request forms run one
	// at a time: the server keeps the form it was last given, and nats.go
	// refuses a reply to a FilterSubjects request that shows FilterSubject.
	for _, d := range trust.AllDurables() {
		ops = append(ops,
			op{
				name:   "create or update durable " + d,
				serial: true,
				expect: owner(d),
				owns:   pubTo(fixed("$JS.API.CONSUMER.CREATE.RUNBOOK." + d)),
				do: func(ctx context.Context, a *actor) error {
					_, err := a.js.CreateOrUpdateConsumer(ctx, eventbus.AuditStream, durableConfig(d))
					return err
				},
			},
			op{
				name:   "create or update durable " + d + " (filter in the subject)",
				serial: true,
				expect: owner(d),
				owns:   pubTo(fixed("$JS.API.CONSUMER.CREATE.RUNBOOK." + d + ".>")),
				do: func(ctx context.Context, a *actor) error {
					cfg := durableConfig(d)
					cfg.FilterSubject, cfg.FilterSubjects = cfg.FilterSubjects[0], nil
					_, err := a.js.CreateOrUpdateConsumer(ctx, eventbus.AuditStream, cfg)
					return err
				},
			},
			op{
				name:   "create durable " + d + " (legacy API)",
				serial: true,
				expect: onlyAdmin,
				owns:   pubTo(fixed("$JS.API.CONSUMER.DURABLE.CREATE.RUNBOOK." + d)),
				do: func(ctx context.Context, a *actor) error {
					return legacyDurableCreate(ctx, a.nc, d)
				},
			},
			op{
				name:   "fetch from durable " + d,
				expect: owner(d),
				owns:   pubTo(fixed("$JS.API.CONSUMER.MSG.NEXT.RUNBOOK." + d)),
				do: func(ctx context.Context, a *actor) error {
					batch, err := a.durables[d].Fetch(1, jetstream.FetchContext(ctx))
					if err != nil {
						return err
					}
					n := 0
					for range batch.Messages() {
						n++
					}
					if n != 1 {
						return fmt.Errorf("fetched %d messages from %s: %v", n, d, batch.Error())
					}
					return nil
				},
			},
			op{
				name:   "subscribe the MAX_DELIVERIES advisories of durable " + d,
				expect: owner(d),
				owns:   subTo(fixed(eventbus.MaxDeliveriesAdvisory(eventbus.AuditStream, d))),
				do: func(ctx context.Context, a *actor) error {
					adv := eventbus.MaxDeliveriesAdvisory(eventbus.AuditStream, d)
					return m.probe(ctx, a, adv, adv)
				},
			},
			op{
				name:   "ack a message of durable " + d,
				expect: owner(d),
				owns:   pubTo(fixed("$JS.ACK.RUNBOOK." + d + ".>")),
				do: func(ctx context.Context, a *actor) error {
					// The server answers an ack that has a reply subject
					// once it has processed it (AckSync).
					_, err := a.nc.RequestWithContext(ctx, a.acks[d], []byte("+ACK"))
					return err
				},
			},
		)
	}

	// Destructive: the others are refused during the matrix; admin does
	// them after it, in this order.
	streamOp := func(name, st string, expectAdmin outcome, subject string, do func(context.Context, jetstream.Stream) error) op {
		return op{
			name: name, adminLast: true,
			expect: func(a *actor) outcome {
				if a.role == trust.Admin {
					return expectAdmin
				}
				return refused
			},
			owns: pubTo(fixed(subject)),
			do:   func(ctx context.Context, a *actor) error { return do(ctx, a.streams[st]) },
		}
	}
	deleteFirst := func(ctx context.Context, s jetstream.Stream) error { return s.DeleteMsg(ctx, 1) }
	purge := func(ctx context.Context, s jetstream.Stream) error {
		if err := s.Purge(ctx); err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err == nil && info.State.Msgs != 0 {
			return fmt.Errorf("%d messages left after purge", info.State.Msgs)
		}
		return err
	}
	ops = append(ops,
		streamOp("delete a message of RUNBOOK_METRICS", eventbus.MetricsStream, works, "$JS.API.STREAM.MSG.DELETE.RUNBOOK_METRICS", deleteFirst),
		streamOp("purge RUNBOOK_METRICS", eventbus.MetricsStream, works, "$JS.API.STREAM.PURGE.RUNBOOK_METRICS", purge),
		streamOp("delete a message of RUNBOOK", eventbus.AuditStream, streamRefuses, "$JS.API.STREAM.MSG.DELETE.RUNBOOK", deleteFirst),
		streamOp("purge RUNBOOK", eventbus.AuditStream, streamRefuses, "$JS.API.STREAM.PURGE.RUNBOOK", purge),
	)
	for _, d := range trust.AllDurables() {
		ops = append(ops, op{
			name: "delete durable " + d, adminLast: true,
			expect: onlyAdmin,
			owns:   pubTo(fixed("$JS.API.CONSUMER.DELETE.RUNBOOK." + d)),
			do: func(ctx context.Context, a *actor) error {
				if err := a.js.DeleteConsumer(ctx, eventbus.AuditStream, d); err != nil {
					return err
				}
				if _, err := a.js.Consumer(ctx, eventbus.AuditStream, d); !errors.Is(err, jetstream.ErrConsumerNotFound) {
					return fmt.Errorf("durable %s still there after delete: %v", d, err)
				}
				return nil
			},
		})
	}
	ops = append(ops,
		op{
			name: "update RUNBOOK (MaxMsgs 1)", adminLast: true,
			expect: onlyAdmin,
			owns:   pubTo(fixed("$JS.API.STREAM.UPDATE.RUNBOOK")),
			do: func(ctx context.Context, a *actor) error {
				cfg := eventbus.AuditStreamConfig(eventbus.StreamOptions{})
				cfg.MaxMsgs = 1
				s, err := a.js.UpdateStream(ctx, cfg)
				if err != nil {
					return err
				}
				info, err := s.Info(ctx)
				if err == nil && (info.Config.MaxMsgs != 1 || info.State.Msgs != 1) {
					return fmt.Errorf("after update: max %d, %d messages", info.Config.MaxMsgs, info.State.Msgs)
				}
				return err
			},
		},
		op{
			name: "delete RUNBOOK", adminLast: true,
			expect: onlyAdmin,
			owns:   pubTo(fixed("$JS.API.STREAM.DELETE.RUNBOOK")),
			do: func(ctx context.Context, a *actor) error {
				if err := a.js.DeleteStream(ctx, eventbus.AuditStream); err != nil {
					return err
				}
				if _, err := a.js.Stream(ctx, eventbus.AuditStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
					return fmt.Errorf("RUNBOOK still there after delete: %v", err)
				}
				return nil
			},
		},
	)
	return ops
}

// consumerOf is the consumer a JetStream consumer API subject on RUNBOOK
// (create, info, delete, next) is about.
func consumerOf(subject string) (string, bool) {
	tok := strings.Split(subject, ".")
	switch {
	case len(tok) >= 6 && subjectMatch("$JS.API.CONSUMER.*.RUNBOOK.>", subject) && slices.Contains([]string{"CREATE", "INFO", "DELETE"}, tok[3]):
		return tok[5], true
	case len(tok) == 7 && subjectMatch("$JS.API.CONSUMER.MSG.NEXT.RUNBOOK.*", subject):
		return tok[6], true
	}
	return "", false
}

// legacyDurableCreate uses the old durable-create API
// ($JS.API.CONSUMER.DURABLE.CREATE), which runbook never needs.
func legacyDurableCreate(ctx context.Context, nc *nats.Conn, d string) error {
	req, err := json.Marshal(struct {
		Stream string                   `json:"stream_name"`
		Config jetstream.ConsumerConfig `json:"config"`
	}{eventbus.AuditStream, durableConfig(d)})
	if err != nil {
		return err
	}
	msg, err := nc.RequestWithContext(ctx, "$JS.API.CONSUMER.DURABLE.CREATE."+eventbus.AuditStream+"."+d, req)
	if err != nil {
		return err
	}
	var resp struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return err
	}
	if resp.Error != nil {
		return resp.Error
	}
	return nil
}

// check runs a's op as a subtest and asserts its expected outcome.
func (m *matrix) check(t *testing.T, a *actor, o op) {
	t.Helper()
	want := o.expect(a)
	got, err := runOp(context.Background(), a, o)
	if got != want {
		t.Fatalf("%s (role %s) %s: want %s, got %s: %v", a.name, a.role, o.name, want, got, err)
	}
	switch got {
	case refused:
		if !errors.Is(err, nats.ErrPermissionViolation) {
			t.Fatalf("refusal is not a permissions violation: %v", err)
		}
		m.forbiddenRefused.Add(1)
	case works:
		m.allowedWorked.Add(1)
	case streamRefuses:
		t.Logf("passed the permissions, refused by the stream: %v", err)
		m.streamProtected.Add(1)
	}
}

func TestPermissionMatrix(t *testing.T) {
	m := setupMatrix(t)
	ops := m.ops()

	t.Run("matrix", func(t *testing.T) {
		for _, a := range m.actors {
			for _, o := range ops {
				if o.adminLast && a.role == trust.Admin {
					continue
				}
				t.Run(a.name+"/"+o.name, func(t *testing.T) {
					if !o.serial {
						t.Parallel()
					}
					m.check(t, a, o)
				})
			}
		}
	})

	// Nothing was refused that no forbidden operation asked for (an allowed
	// operation partly refused, e.g. a history read whose consumer delete
	// was refused, would show here), and the refusals left no trace.
	t.Run("no other refusal", func(t *testing.T) {
		deadline := time.Now().Add(opTimeout) // the barriers wait together
		for _, a := range m.actors {
			if a.role == trust.Admin {
				continue
			}
			t.Run(a.name, func(t *testing.T) {
				t.Parallel()
				// A barrier: the connection's callbacks run in order, so
				// once this refusal is seen every earlier one has been.
				barrier := "matrix.barrier." + a.name
				vch, stop := a.viol.watch(func(v violation) bool { return v.subject == barrier })
				defer stop()
				if err := a.nc.Publish(barrier, nil); err != nil {
					t.Fatal(err)
				}
				select {
				case <-vch:
				case <-time.After(time.Until(deadline)):
					t.Fatalf("publishing on %s was not refused", barrier)
				}
				all, other := a.viol.snapshot()
				for _, v := range all {
					if v.subject == barrier {
						continue
					}
					if !slices.ContainsFunc(ops, func(o op) bool { return o.expect(a) == refused && o.owns(a, v) }) {
						t.Errorf("the server refused %s on %q, which no forbidden operation asked for", v.kind, v.subject)
					}
				}
				for _, err := range other {
					t.Errorf("unexpected asynchronous error: %v", err)
				}
			})
		}
	})

	t.Run("refusals left no trace", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		admin := m.byName[auth.Admin]
		for _, d := range trust.AllDurables() {
			var fetchers, ackers int
			for _, a := range m.actors {
				if owner(d)(a) == works {
					fetchers++
					ackers++
				}
			}
			cons, err := admin.js.Consumer(ctx, eventbus.AuditStream, d)
			if err != nil {
				t.Fatal(err)
			}
			info, err := cons.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			delivered := len(m.actors) + fetchers
			if int(info.Delivered.Consumer) != delivered || info.NumAckPending != delivered-ackers || int(info.NumPending) != m.queued-delivered {
				t.Errorf("durable %s: delivered %d, ack pending %d, pending %d; want %d, %d, %d (a forbidden fetch or ack took effect, or an allowed one did not)",
					d, info.Delivered.Consumer, info.NumAckPending, info.NumPending, delivered, delivered-ackers, m.queued-delivered)
			}
			if !slices.Equal(info.Config.FilterSubjects, durableConfig(d).FilterSubjects) && info.Config.FilterSubject != durableConfig(d).FilterSubjects[0] {
				t.Errorf("durable %s: filter changed to %q %v", d, info.Config.FilterSubject, info.Config.FilterSubjects)
			}
		}
		var names []string
		for name := range admin.js.StreamNames(ctx).Name() {
			names = append(names, name)
		}
		slices.Sort(names)
		if want := []string{"EVIL_ADMIN", eventbus.AuditStream, eventbus.MetricsStream}; !slices.Equal(names, want) {
			t.Errorf("streams %v, want %v", names, want)
		}
		info, err := admin.streams[eventbus.AuditStream].Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.MaxMsgs != -1 || info.State.Msgs < uint64(5*m.queued) {
			t.Errorf("RUNBOOK: MaxMsgs %d, %d messages: changed by a forbidden operation", info.Config.MaxMsgs, info.State.Msgs)
		}
	})

	// Admin's destructive operations, in order.
	t.Run("admin last", func(t *testing.T) {
		admin := m.byName[auth.Admin]
		for _, o := range ops {
			if o.adminLast {
				t.Run(admin.name+"/"+o.name, func(t *testing.T) { m.check(t, admin, o) })
			}
		}
	})

	t.Run("connect", func(t *testing.T) {
		url := m.s.ClientURL()
		t.Run("anonymous", func(t *testing.T) {
			nc, err := eventbus.Connect(url, "anonymous")
			if err == nil {
				nc.Close()
				t.Fatal("an anonymous client connected")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("anonymous: %v", err)
			}
			m.forbiddenRefused.Add(1)
		})
		t.Run("unknown key", func(t *testing.T) {
			kp, err := nkeys.CreateUser()
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := kp.PublicKey()
			nc, err := eventbus.Connect(url, "stranger", nats.Nkey(pub, kp.Sign))
			if err == nil {
				nc.Close()
				t.Fatal("a key outside the keyring connected")
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Fatalf("unknown key: %v", err)
			}
			m.forbiddenRefused.Add(1)
		})
		t.Run("revoked", func(t *testing.T) { m.revoked(t) })
	})

	n, w, p := m.forbiddenRefused.Load(), m.allowedWorked.Load(), m.streamProtected.Load()
	t.Logf("%d forbidden pairs refused, %d allowed pairs worked (%d more passed the permissions and were refused by RUNBOOK's DenyPurge/DenyDelete)", n, w, p)
	if n < 40 {
		t.Errorf("only %d forbidden pairs refused; issue 11 asks for at least 40", n)
	}
}

// revoked: an identity that worked is revoked and the keyring reloaded: a
// new connection is refused and the server closes the one it had.
func (m *matrix) revoked(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc := m.s.ConnAs(t, "mallory")
	// Its refused reconnects report authorization errors: asserted below
	// through LastError, not printed.
	nc.SetErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	disconnected := make(chan error, 1)
	nc.SetDisconnectErrHandler(func(_ *nats.Conn, err error) {
		select {
		case disconnected <- err:
		default:
		}
	})
	// Before: a request to JetStream is answered.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("mallory before revocation: %v", err)
	}

	if err := m.s.Store.Revoke("mallory"); err != nil {
		t.Fatal(err)
	}
	m.s.Reload(t)

	select {
	case err := <-disconnected:
		t.Logf("the server dropped the revoked identity's connection: %v", err)
	case <-ctx.Done():
		t.Fatal("the revoked identity's connection stayed open after the reload")
	}
	m.forbiddenRefused.Add(1)
	// It tries to reconnect, is refused, and gives up.
	select {
	case <-closed:
		if err := nc.LastError(); !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("closed with %v, want an authorization violation", err)
		}
	case <-ctx.Done():
		t.Fatalf("the revoked identity's connection is %v, not closed", nc.Status())
	}

	id, err := auth.Open(m.s.Store.SeedPath("mallory"))
	if err != nil {
		t.Fatal(err)
	}
	nc2, err := eventbus.Connect(m.s.ClientURL(), "mallory-again", id.Options()...)
	if err == nil {
		nc2.Close()
		t.Fatal("a revoked identity connected")
	}
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("revoked: %v", err)
	}
	m.forbiddenRefused.Add(1)
}

// An anonymous client gets a clear error from eventbus.Connect.
func TestAnonymousConnectRefused(t *testing.T) {
	s := natstest.SecureServer(t)
	nc, err := eventbus.Connect(s.ClientURL(), "anonymous")
	if err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected to the secure server")
	}
	if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("error does not say why: %v", err)
	}
	if !strings.Contains(err.Error(), s.ClientURL()) {
		t.Errorf("error does not name the server: %v", err)
	}
	t.Logf("anonymous: %v", err)
}
