package eventbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/kis-core/runbook/domain/trust"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// A Handler reacts to one event type. The contract, the same for every
// consumer:
//
//   - return nil only once the outcome of the event is stored (its events
//     published and acknowledged by the stream): the message is acked then;
//   - return Retry(err, d) to have it redelivered after d;
//   - return Permanent(err) when retrying cannot help: it is dead-lettered;
//   - any other error is retried with the consumer's backoff, and
//     dead-lettered after MaxDeliver attempts.
//
// A handler may be called again for an event it already handled (redelivery
// after a crash or a lost ack): it must rebuild where the run stands from the
// run's history and publish with deterministic ids.
type Handler func(ctx context.Context, ev *runbookv1.Event) error

// retryError asks for a redelivery after a delay.
type retryError struct {
	err   error
	after time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// Retry makes the message redelivered after d.
func Retry(err error, d time.Duration) error { return &retryError{err: err, after: d} }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: the message is dead-lettered.
func Permanent(err error) error { return &permanentError{err: err} }

// ConsumerOptions configure one durable consumer.
type ConsumerOptions struct {
	// Durable is the consumer's name. Never rename it: a new name re-consumes
	// the whole stream.
	Durable string
	// Concurrency bounds the messages handled at once (MaxAckPending).
	Concurrency int
	// MaxDeliver is how many times a message is tried before it is dead-lettered.
	MaxDeliver int
	// AckWait is how long an un-acked message waits before redelivery;
	// handlers send InProgress every AckWait/3 while they work.
	AckWait time.Duration
	// Backoff is the delay before each retry (the last one repeats).
	Backoff []time.Duration
	// DrainTimeout is how long in-flight handlers may finish at shutdown
	// before their context is cancelled and their message handed back.
	DrainTimeout time.Duration
	// Fault, for tests only: called before each handler; an error it returns
	// is treated as the handler's.
	Fault func(ev *runbookv1.Event) error
	// Keyring, when set, makes the router check who published each
	// message before its handler sees it: a valid Runbook-Signer signature
	// by an active identity whose role may publish the event's type
	// (trust.MayPublish). Anything else is dead-lettered with the reason.
	// The handler finds the publisher with PublisherOf(ctx). A keyring
	// that also has RecentKeyring (auth.KeyringFile) is read through it,
	// and through Keyring again before a key it does not know is refused.
	Keyring interface {
		Keyring() (*trust.Keyring, error)
	}
}

type publisherKey struct{}

// PublisherOf is the identity that published the event a handler is
// handling (checked by the router); ok is false without a Keyring.
func PublisherOf(ctx context.Context) (trust.Identity, bool) {
	id, ok := ctx.Value(publisherKey{}).(trust.Identity)
	return id, ok
}

// checkPublisher verifies a message's publisher (from its header and
// data as stored) against the keyring.
func (r *Router) checkPublisher(ctx context.Context, header nats.Header, data []byte, ev *runbookv1.Event) (context.Context, error) {
	recent, cached := r.opts.Keyring.(interface {
		RecentKeyring() (*trust.Keyring, error)
	})
	var kr *trust.Keyring
	var err error
	if cached {
		kr, err = recent.RecentKeyring()
	} else {
		kr, err = r.opts.Keyring.Keyring()
	}
	if err != nil {
		return ctx, fmt.Errorf("read the keyring: %w", err) // retried: not the message's fault
	}
	pub, err := Publisher(header, data)
	switch {
	case err != nil:
		return ctx, Permanent(err)
	case pub == "":
		return ctx, Permanent(fmt.Errorf("%s has no publisher signature (%s): not published by a runbook identity", ev.Type, HeaderSigner))
	}
	id, ok := kr.ByKey(pub)
	if !ok && cached {
		// An identity created since the keyring was last read?
		if kr, err = r.opts.Keyring.Keyring(); err != nil {
			return ctx, fmt.Errorf("read the keyring: %w", err)
		}
		id, ok = kr.ByKey(pub)
	}
	switch {
	case !ok:
		return ctx, Permanent(fmt.Errorf("%s published by unknown key %s", ev.Type, pub))
	case !id.Revoked.IsZero():
		return ctx, Permanent(fmt.Errorf("%s published by %s, whose key is revoked", ev.Type, id.Name))
	case !trust.MayPublish(id.Role, ev.Type):
		return ctx, Permanent(fmt.Errorf("%s published by %s, a %s: a %s may not publish %s", ev.Type, id.Name, id.Role, id.Role, ev.Type))
	}
	return context.WithValue(ctx, publisherKey{}, id), nil
}

func (o *ConsumerOptions) setDefaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = 64
	}
	if o.MaxDeliver <= 0 {
		o.MaxDeliver = 5
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if len(o.Backoff) == 0 {
		o.Backoff = []time.Duration{200 * time.Millisecond, time.Second, 5 * time.Second, 15 * time.Second}
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 10 * time.Second
	}
}

// Router is one durable consumer and the handlers of its event types: the
// single adapter between JetStream and typed handlers.
type Router struct {
	bus      *Bus
	opts     ConsumerOptions
	log      *slog.Logger
	metrics  *Metrics
	handlers map[string]Handler
}

// NewRouter makes a router for one durable consumer.
func NewRouter(bus *Bus, opts ConsumerOptions, log *slog.Logger, m *Metrics) *Router {
	opts.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Router{bus: bus, opts: opts, log: log.With("consumer", opts.Durable), metrics: m, handlers: map[string]Handler{}}
}

// Handle registers the handler of one event type.
func (r *Router) Handle(typ string, h Handler) {
	if !KnownType(typ) {
		panic(fmt.Sprintf("eventbus: %s handles unknown event type %q", r.opts.Durable, typ))
	}
	r.handlers[typ] = h
}

// On registers a typed handler: fn receives the envelope and its payload.
func On[T proto.Message](r *Router, typ string, fn func(ctx context.Context, ev *runbookv1.Event, p T) error) {
	r.Handle(typ, func(ctx context.Context, ev *runbookv1.Event) error {
		p, ok := Payload(ev).(T)
		if !ok {
			return Permanent(fmt.Errorf("%s event %s carries %T", typ, ev.GetId(), Payload(ev)))
		}
		return fn(ctx, ev, p)
	})
}

// FilterSubjects are the subjects the consumer reads.
func (r *Router) FilterSubjects() []string {
	out := make([]string, 0, len(r.handlers))
	for t := range r.handlers {
		out = append(out, TypeSubjects(t))
	}
	sort.Strings(out)
	return out
}

// ConsumerConfig is the durable consumer's configuration.
func (r *Router) ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        r.opts.Durable,
		Description:    "runbook " + r.opts.Durable,
		FilterSubjects: r.FilterSubjects(),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        r.opts.AckWait,
		MaxDeliver:     r.opts.MaxDeliver,
		MaxAckPending:  r.opts.Concurrency,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
}

// Run consumes until ctx is cancelled, then stops fetching, lets in-flight
// handlers finish for up to DrainTimeout, cancels the rest and hands their
// messages back (nak) so another instance takes them at once.
func (r *Router) Run(ctx context.Context) error {
	if len(r.handlers) == 0 {
		return fmt.Errorf("consumer %s has no handlers", r.opts.Durable)
	}
	cons, err := r.bus.audit.CreateOrUpdateConsumer(ctx, r.ConsumerConfig())
	if err != nil {
		if ctx.Err() != nil {
			return nil // shut down while starting: nothing was consumed
		}
		return fmt.Errorf("create consumer %s: %w", r.opts.Durable, err)
	}
	r.metrics.Lag.Track(r.opts.Durable, cons, r.log)
	defer r.metrics.Lag.Untrack(r.opts.Durable, cons)
	// Present at 0 from the start: an alert on increase() sees the first one.
	r.metrics.DeadLettered.WithLabelValues(r.opts.Durable)
	// Handlers run on their own context: shutdown first waits for them.
	hctx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	stopWatch, err := r.watchMaxDeliveries()
	if err != nil {
		return fmt.Errorf("consumer %s: %w", r.opts.Durable, err)
	}
	defer stopWatch(r.opts.DrainTimeout)
	it, err := cons.Messages(jetstream.PullMaxMessages(r.opts.Concurrency))
	if err != nil {
		return fmt.Errorf("consume %s: %w", r.opts.Durable, err)
	}
	stopFetch := context.AfterFunc(ctx, it.Stop)
	defer stopFetch()
	sem := make(chan struct{}, r.opts.Concurrency)
	var wg sync.WaitGroup
	r.log.Info("consumer started", "filters", r.FilterSubjects(), "concurrency", r.opts.Concurrency)

	var runErr error
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				runErr = fmt.Errorf("consume %s: %w", r.opts.Durable, err)
			}
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			r.handle(hctx, msg)
		}()
	}
	it.Stop()

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(r.opts.DrainTimeout):
		r.log.Warn("drain timeout: cancelling in-flight handlers", "timeout", r.opts.DrainTimeout)
		cancelHandlers()
		<-done
	}
	r.log.Info("consumer stopped")
	return runErr
}

func (r *Router) handle(ctx context.Context, msg jetstream.Msg) {
	start := time.Now()
	ev, meta, err := DecodeMsg(msg)
	if meta == nil {
		r.log.Error("message without metadata", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	typ := "unknown"
	if ev != nil {
		typ = ev.Type
	} else if _, t, perr := ParseSubject(msg.Subject()); perr == nil && KnownType(t) {
		typ = t
	}
	r.metrics.InFlight.WithLabelValues(r.opts.Durable).Inc()
	defer r.metrics.InFlight.WithLabelValues(r.opts.Durable).Dec()

	// The handler's history reads see at least the event it handles.
	hctx := AtLeast(ctx, meta.Sequence.Stream)
	if err == nil && r.opts.Keyring != nil {
		hctx, err = r.checkPublisher(hctx, msg.Headers(), msg.Data(), ev)
	}
	if err == nil {
		h := r.handlers[typ]
		if h == nil {
			err = Permanent(fmt.Errorf("no handler for %s", typ))
		} else {
			err = r.call(hctx, msg, h, ev)
		}
	}
	r.metrics.Duration.WithLabelValues(r.opts.Durable, typ).Observe(time.Since(start).Seconds())
	// The message's logger, made only when something is logged (most
	// messages are acked in silence).
	logger := func() *slog.Logger {
		log := r.log.With("subject", msg.Subject(), "seq", meta.Sequence.Stream, "delivery", meta.NumDelivered)
		if ev != nil {
			log = log.With("run_id", ev.RunId, "event", ev.Type, "id", ev.Id)
		}
		return log
	}

	var retry *retryError
	var perm *permanentError
	switch {
	case err == nil:
		if aerr := msg.Ack(); aerr != nil {
			logger().Warn("ack failed; the event will be redelivered and handled idempotently", "err", aerr)
		}
		r.metrics.Handled.WithLabelValues(r.opts.Durable, typ, "ack").Inc()
	case ctx.Err() != nil && int(meta.NumDelivered) >= r.opts.MaxDeliver:
		// Shutting down during the last delivery: JetStream will not
		// deliver it again (its MAX_DELIVERIES advisory would reach only
		// the replicas still running): record it here.
		r.deadLetter(msg, meta, typ, fmt.Errorf("the last delivery was interrupted by a shutdown: %w", err), true, logger())
	case ctx.Err() != nil:
		// Shutting down: hand the message back at once.
		_ = msg.Nak()
		r.metrics.Handled.WithLabelValues(r.opts.Durable, typ, "shutdown").Inc()
		logger().Info("handler interrupted by shutdown; message handed back", "err", err)
	case errors.Is(err, ErrDecode) || errors.As(err, &perm):
		r.deadLetter(msg, meta, typ, err, false, logger())
	case int(meta.NumDelivered) >= r.opts.MaxDeliver:
		// An accepted event whose handler kept failing: the run needed it.
		r.deadLetter(msg, meta, typ, err, true, logger())
	case errors.As(err, &retry):
		_ = msg.NakWithDelay(retry.after)
		r.metrics.Handled.WithLabelValues(r.opts.Durable, typ, "retry").Inc()
		logger().Warn("handler asked for a retry", "after", retry.after, "err", err)
	default:
		d := r.opts.Backoff[min(int(meta.NumDelivered)-1, len(r.opts.Backoff)-1)]
		_ = msg.NakWithDelay(d)
		r.metrics.Handled.WithLabelValues(r.opts.Durable, typ, "retry").Inc()
		logger().Warn("handler failed; will retry", "after", d, "err", err)
	}
}

// call runs h, sending InProgress heartbeats while it works so long phases
// keep their message. The heartbeat is a timer, not a goroutine: most
// handlers end before the first one is due.
func (r *Router) call(ctx context.Context, msg jetstream.Msg, h Handler, ev *runbookv1.Event) (err error) {
	every := r.opts.AckWait / 3
	var mu sync.Mutex
	stopped := false
	var beat *time.Timer
	mu.Lock() // beat is set before its first beat reads it
	beat = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		_ = msg.InProgress()
		beat.Reset(every)
	})
	mu.Unlock()
	defer func() {
		mu.Lock()
		stopped = true
		beat.Stop()
		mu.Unlock()
	}()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	if r.opts.Fault != nil {
		if err := r.opts.Fault(ev); err != nil {
			return err
		}
	}
	return h(ctx, ev)
}

// deadLetter records the message as event.dead_lettered (exhausted: an
// accepted event whose deliveries ran out) and terminates it.
func (r *Router) deadLetter(msg jetstream.Msg, meta *jetstream.MsgMetadata, typ string, cause error, exhausted bool, log *slog.Logger) {
	dl := DeadLetter(r.opts.Durable, msg.Subject(), meta.Sequence.Stream, meta.NumDelivered, msg.Headers(), msg.Data(), cause)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if dl != nil {
		dl.GetEventDeadLettered().Exhausted = exhausted
		if _, err := r.bus.Publish(ctx, dl); err != nil {
			// Not recorded: keep the message so it is not lost.
			log.Error("dead-letter publish failed; message kept for redelivery", "err", err, "reason", cause)
			_ = msg.NakWithDelay(5 * time.Second)
			return
		}
	}
	_ = msg.Term()
	r.metrics.DeadLettered.WithLabelValues(r.opts.Durable).Inc()
	r.metrics.Handled.WithLabelValues(r.opts.Durable, typ, "dead_letter").Inc()
	log.Error("event dead-lettered", "reason", cause, "exhausted", exhausted)
}

// DeadLetter is the event.dead_lettered by which consumer refuses the
// message stored at seq on subject (header and data as stored) after
// deliveries attempts, for cause: published on the message's own run, its
// id made of the consumer and the sequence (a re-emission is the same
// event). nil when the subject names no valid run: nowhere to publish it.
func DeadLetter(consumer, subject string, seq, deliveries uint64, header nats.Header, data []byte, cause error) *runbookv1.Event {
	runID, _, err := ParseSubject(subject)
	if err != nil || ValidateRunID(runID) != nil {
		return nil
	}
	ct := ""
	if header != nil {
		ct = header.Get(HeaderContentType)
	}
	return New(runID, &runbookv1.Event_EventDeadLettered{EventDeadLettered: &runbookv1.DeadLettered{
		Consumer:            consumer,
		Reason:              cause.Error(),
		OriginalSubject:     subject,
		OriginalSequence:    seq,
		Deliveries:          deliveries,
		OriginalData:        data,
		OriginalContentType: ct,
	}}, consumer, seq)
}
