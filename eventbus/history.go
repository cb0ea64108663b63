package eventbus

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// HistoryCache keeps the runs' events in memory, fed by one ordered
// consumer that follows the whole audit stream, so that a service's
// RunHistory is a map lookup instead of a consumer created, read and
// deleted on the server for every event it handles (that was most of the
// pipeline's CPU per event).
//
// A read sees the stream at least up to the sequence the caller has seen:
// the event its handler is handling (the router puts it in the handler's
// context; other readers state theirs with AtLeast) and every event its
// Bus has published. That is what a fresh read from the server gives too:
// neither is atomic with what the caller does next; replicas stay safe by
// the stream's own checks (PublishOnce, message ids), not by read freshness.
//
// A run is served from memory only when the cache holds it whole: its first
// event there is its change.requested, and no part of it was evicted.
// Everything else — runs older than the cache, evicted runs, a cache that
// has fallen behind or lost its consumer — is read from the stream as
// before. Memory is bounded by MaxBytes (the stored messages' sizes); the
// least recently used runs go first.
type HistoryCache struct {
	bus  *Bus
	opts HistoryCacheOptions
	log  *slog.Logger

	mu        sync.Mutex
	applied   uint64        // the last stream sequence applied
	live      bool          // the follower is consuming
	advanced  chan struct{} // closed (and replaced) whenever applied moves
	down      chan struct{} // closed (and replaced) when live turns false
	runs      map[string]*cachedRun
	lru       *list.List // of *cachedRun, most recently used first
	bytes     int
	evicted   map[string]struct{} // runs no longer whole in memory
	evictFIFO []string

	hits, misses atomic.Uint64
}

// HistoryCacheOptions bound a HistoryCache.
type HistoryCacheOptions struct {
	// MaxBytes bounds the stored messages kept (default 64 MiB).
	MaxBytes int
	// MaxWait is how long a read waits for the follower to reach the
	// caller's sequence before reading the stream instead (default 2s).
	MaxWait time.Duration
	// Log receives the follower's restarts.
	Log *slog.Logger
}

type cachedRun struct {
	id       string
	events   []Envelope
	complete bool
	bytes    int
	elem     *list.Element
	// changed is closed (and replaced) when an event is added or the run
	// is evicted: what its followers wait on.
	changed chan struct{}
}

// maxTombstones bounds the memory of which runs were evicted.
const maxTombstones = 100_000

// envelopeOverhead approximates an envelope's memory besides its bytes.
const envelopeOverhead = 256

// NewHistoryCache makes a cache that reads through bus's connection. Start
// it with Run and attach it to every Bus of the process with UseHistory.
func NewHistoryCache(bus *Bus, o HistoryCacheOptions) *HistoryCache {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 64 << 20
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 2 * time.Second
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &HistoryCache{
		bus: bus, opts: o, log: log,
		advanced: make(chan struct{}),
		down:     make(chan struct{}),
		runs:     map[string]*cachedRun{},
		lru:      list.New(),
		evicted:  map[string]struct{}{},
	}
}

// UseHistory makes b's RunHistory read from c when c holds the run.
func (b *Bus) UseHistory(c *HistoryCache) { b.history = c }

// Live reports whether the follower is consuming the stream: runs that
// begin from now on are held whole.
func (c *HistoryCache) Live() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

// Stats are the reads served from memory (hits) and from the stream
// (misses) so far.
func (c *HistoryCache) Stats() (hits, misses uint64) { return c.hits.Load(), c.misses.Load() }

// Run follows the audit stream from its current end until ctx ends,
// restarting its consumer (from the next sequence it lacks) when the
// connection or the cluster fails it.
func (c *HistoryCache) Run(ctx context.Context) error {
	var last uint64
	err := retryRead(ctx, func() (err error) {
		last, err = c.bus.LastSeq(ctx)
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("history cache: %w", err)
	}
	c.mu.Lock()
	c.applied = last
	c.mu.Unlock()
	wait := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := c.follow(ctx)
		c.setLive(false)
		if ctx.Err() != nil {
			break
		}
		c.log.Warn("history cache: following the audit stream failed; restarting", "err", err, "after", wait.String())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
	return nil
}

func (c *HistoryCache) follow(ctx context.Context) error {
	c.mu.Lock()
	from := c.applied + 1
	c.mu.Unlock()
	cons, err := c.bus.ordered(ctx, []string{SubjectPrefix + ".>"}, from)
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("follow the audit stream: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	c.setLive(true)
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return ctx.Err()
			}
			return fmt.Errorf("follow the audit stream: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		c.apply(meta.Sequence.Stream, msg, meta.Timestamp)
	}
}

func (c *HistoryCache) setLive(live bool) {
	c.mu.Lock()
	if c.live && !live {
		close(c.down)
		c.down = make(chan struct{})
	}
	c.live = live
	close(c.advanced)
	c.advanced = make(chan struct{})
	c.mu.Unlock()
}

func (c *HistoryCache) apply(seq uint64, msg jetstream.Msg, ts time.Time) {
	subject := msg.Subject()
	run, typ, perr := ParseSubject(subject)
	var ev *runbookv1.Event
	if perr == nil {
		ev, _ = Decode(subject, msg.Headers(), msg.Data(), ts) // undecodable: skipped, as Scan does
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq <= c.applied {
		return // a restarted follower's overlap
	}
	c.applied = seq
	close(c.advanced)
	c.advanced = make(chan struct{})
	if ev == nil {
		return // undecodable: not part of a history (Scan skips it too)
	}
	r := c.runs[run]
	if r == nil {
		_, gone := c.evicted[run]
		r = &cachedRun{id: run, complete: typ == "change.requested" && !gone, changed: make(chan struct{})}
		r.elem = c.lru.PushFront(r)
		c.runs[run] = r
	} else {
		c.lru.MoveToFront(r.elem)
	}
	n := len(msg.Data()) + len(subject) + envelopeOverhead
	r.events = append(r.events, envelope(ev, seq, subject, msg.Headers(), msg.Data()))
	r.bytes += n
	c.bytes += n
	close(r.changed)
	r.changed = make(chan struct{})
	for c.bytes > c.opts.MaxBytes && c.lru.Len() > 1 {
		c.evictLocked(c.lru.Back().Value.(*cachedRun).id)
	}
}

// evictLocked drops run and remembers that it is no longer whole here.
func (c *HistoryCache) evictLocked(run string) {
	if r := c.runs[run]; r != nil {
		c.lru.Remove(r.elem)
		c.bytes -= r.bytes
		delete(c.runs, run)
		close(r.changed) // its followers go to the stream
	}
	if _, ok := c.evicted[run]; ok {
		return
	}
	c.evicted[run] = struct{}{}
	c.evictFIFO = append(c.evictFIFO, run)
	if len(c.evictFIFO) > maxTombstones {
		delete(c.evicted, c.evictFIFO[0])
		c.evictFIFO = c.evictFIFO[1:]
	}
}

// read returns run's history once the cache has applied target, and false
// when it cannot serve it (not whole here, not live, or not caught up in
// MaxWait): the caller reads the stream.
func (c *HistoryCache) read(ctx context.Context, run string, target uint64) ([]Envelope, bool) {
	out, ok := c.snapshot(ctx, run, target)
	// Callers own what they get: the cached events stay as stored.
	for i := range out {
		out[i].Event = proto.Clone(out[i].Event).(*runbookv1.Event)
	}
	return out, ok
}

// last returns the newest event of type typ in run (nil when it has none),
// as fresh as read, and false when the cache cannot serve it.
func (c *HistoryCache) last(ctx context.Context, run, typ string, target uint64) (*Envelope, bool) {
	h, ok := c.snapshot(ctx, run, target)
	if !ok {
		return nil, false
	}
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].Event.GetType() == typ {
			e := h[i]
			e.Event = proto.Clone(e.Event).(*runbookv1.Event)
			return &e, true
		}
	}
	return nil, true
}

// snapshot is read's lookup: the run's envelopes, sharing the cached events.
func (c *HistoryCache) snapshot(ctx context.Context, run string, target uint64) ([]Envelope, bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	c.mu.Lock()
	for c.applied < target {
		if !c.live {
			c.mu.Unlock()
			c.misses.Add(1)
			return nil, false
		}
		ch := c.advanced
		c.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(c.opts.MaxWait)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			c.misses.Add(1)
			return nil, false
		case <-timer.C:
			c.misses.Add(1)
			return nil, false
		}
		c.mu.Lock()
	}
	r := c.runs[run]
	if r == nil || !r.complete {
		c.mu.Unlock()
		c.misses.Add(1)
		return nil, false
	}
	c.lru.MoveToFront(r.elem)
	out := make([]Envelope, len(r.events))
	copy(out, r.events)
	c.mu.Unlock()
	c.hits.Add(1)
	return out, true
}

// followRun calls fn for run's events of the given types from stream
// sequence *next on, live, as Bus.Follow does, advancing *next past each
// event given. It returns served=false when the cache cannot (or can no
// longer) serve the run: the caller follows the stream from *next.
func (c *HistoryCache) followRun(ctx context.Context, run string, types map[string]bool, next *uint64, fn func(Envelope) error) (served bool, err error) {
	for {
		c.mu.Lock()
		r := c.runs[run]
		if r == nil || !r.complete || !c.live {
			c.mu.Unlock()
			return false, nil
		}
		var batch []Envelope
		for _, e := range r.events {
			if e.Seq >= *next && types[e.Event.GetType()] {
				batch = append(batch, e)
			}
		}
		changed, down := r.changed, c.down
		c.mu.Unlock()
		for _, e := range batch {
			e.Event = proto.Clone(e.Event).(*runbookv1.Event)
			*next = e.Seq + 1
			if err := fn(e); err != nil {
				if errors.Is(err, errStopFollow) {
					return true, nil
				}
				return true, err
			}
		}
		select {
		case <-changed:
		case <-down:
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
}

type atLeastKey struct{}

// AtLeast returns a context whose history reads see the audit stream at
// least up to seq (the router does this for every handler with the
// sequence of the event it handles).
func AtLeast(ctx context.Context, seq uint64) context.Context {
	if prev, _ := ctx.Value(atLeastKey{}).(uint64); prev >= seq {
		return ctx
	}
	return context.WithValue(ctx, atLeastKey{}, seq)
}

func atLeast(ctx context.Context) uint64 {
	seq, _ := ctx.Value(atLeastKey{}).(uint64)
	return seq
}

// StartHistoryCache starts a HistoryCache reading through bus, attached to
// bus and to the others given (the services of one process share one), and
// returns the function that stops it and waits for its follower.
func StartHistoryCache(ctx context.Context, bus *Bus, o HistoryCacheOptions, others ...*Bus) (stop func()) {
	c := NewHistoryCache(bus, o)
	for _, b := range append([]*Bus{bus}, others...) {
		b.UseHistory(c)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx); err != nil {
			c.log.Warn("history cache stopped; history is read from the stream", "err", err)
		}
	}()
	return func() { cancel(); <-done }
}
