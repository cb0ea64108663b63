package eventbus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// ErrAlreadyPublished is returned by PublishOnce when the run already has an
// event of that type: the stream refused the second one.
var ErrAlreadyPublished = errors.New("already published for this run")

// ErrNotLatest is returned by PublishAfter when the run has an event of
// that type newer than the one the caller decided on.
var ErrNotLatest = errors.New("another event of this type was stored since")

// Bus is one service's handle on the event log: publishing, reading a run's
// history, and building its consumer. It is safe for concurrent use.
type Bus struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	audit  jetstream.Stream
	source string
	signer nkeys.KeyPair
	msgSig *msgSigner // signer, expanded for signing every message
	now    func() time.Time
	// history, when set, serves RunHistory from memory (UseHistory).
	history *HistoryCache
	// lastPub is the highest stream sequence this bus has published: its
	// history reads see at least that far.
	lastPub atomic.Uint64
}

// published records that the stream holds seq, published by this bus.
func (b *Bus) published(seq uint64) {
	for {
		cur := b.lastPub.Load()
		if seq <= cur || b.lastPub.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// Options of a Bus.
type Options struct {
	// Source names the publisher in every event: "<service>/<instance>".
	Source string
	// Provision creates or updates the streams (services do it at start-up;
	// clients such as the CLI only look them up).
	Provision bool
	Streams   StreamOptions
	// Signer, when set, signs every event this bus publishes (headers
	// Runbook-Signer and Runbook-Signature): the connection's identity.
	Signer nkeys.KeyPair
}

// NewBus wraps a connection. With Provision it creates the streams first.
func NewBus(ctx context.Context, nc *nats.Conn, o Options) (*Bus, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	if o.Provision {
		if err := EnsureStreams(ctx, js, o.Streams); err != nil {
			return nil, err
		}
	}
	audit, err := js.Stream(ctx, AuditStream)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("stream %s does not exist on this NATS server: an admin creates it: start `runbook serve`, or run `runbook provision --creds admin.nk` against this server", AuditStream)
		}
		return nil, fmt.Errorf("look up stream %s: %w", AuditStream, err)
	}
	b := &Bus{nc: nc, js: js, audit: audit, source: o.Source, signer: o.Signer, now: time.Now}
	if o.Signer != nil {
		if b.msgSig, err = newMsgSigner(o.Signer); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// JetStream exposes the underlying context for tools and tests.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Conn is the NATS connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Source is the name this bus publishes under.
func (b *Bus) Source() string { return b.source }

func (b *Bus) message(ev *runbookv1.Event) (*nats.Msg, error) {
	stamp(ev, b.source, b.now())
	if ev.Id == "" {
		return nil, fmt.Errorf("publish %s for run %s: event has no id", ev.Type, ev.RunId)
	}
	if err := ValidateRunID(ev.RunId); err != nil {
		return nil, fmt.Errorf("publish %s: %w", ev.Type, err)
	}
	if ev.Type == "" || ev.Type != TypeOf(ev) {
		return nil, fmt.Errorf("publish %s for run %s: type does not match payload %q", ev.Type, ev.RunId, TypeOf(ev))
	}
	data, err := Encode(ev)
	if err != nil {
		return nil, err
	}
	msg := nats.NewMsg(Subject(ev.RunId, ev.Type))
	msg.Data = data
	msg.Header.Set(HeaderContentType, ContentTypeProto)
	if b.msgSig != nil {
		b.msgSig.sign(msg)
	}
	return msg, nil
}

// Publish stores ev on the audit stream with Nats-Msg-Id = ev.Id, so a
// re-emission inside the duplicate window is dropped by the server. It returns
// the stream sequence once the server has stored the event.
func (b *Bus) Publish(ctx context.Context, ev *runbookv1.Event) (uint64, error) {
	msg, err := b.message(ev)
	if err != nil {
		return 0, err
	}
	ack, err := b.publish(ctx, msg, jetstream.WithMsgID(ev.Id))
	if err != nil {
		return 0, fmt.Errorf("publish %s (%s): %w", msg.Subject, ev.Id, err)
	}
	return ack.Sequence, nil
}

// PublishOnce stores ev only if its run has no event of this type yet
// (Nats-Expected-Last-Subject-Sequence: 0). A second attempt, from any
// process, returns ErrAlreadyPublished.
func (b *Bus) PublishOnce(ctx context.Context, ev *runbookv1.Event) (uint64, error) {
	msg, err := b.message(ev)
	if err != nil {
		return 0, err
	}
	ack, err := b.publish(ctx, msg, jetstream.WithMsgID(ev.Id), jetstream.WithExpectLastSequencePerSubject(0))
	if err != nil {
		if wrongLast(err) {
			return 0, fmt.Errorf("%s for run %s: %w", ev.Type, ev.RunId, ErrAlreadyPublished)
		}
		return 0, fmt.Errorf("publish once %s (%s): %w", msg.Subject, ev.Id, err)
	}
	if ack.Duplicate {
		return ack.Sequence, fmt.Errorf("%s for run %s: %w", ev.Type, ev.RunId, ErrAlreadyPublished)
	}
	return ack.Sequence, nil
}

// PublishAfter stores ev only if the run's latest event of ev's type is
// the one at stream sequence last (0: none): a check made on the run's
// history, then acted on, cannot be overtaken by another process acting
// on the same history (optimistic concurrency: the stream compares and
// stores in one step). Otherwise it returns ErrNotLatest: read again and
// decide again. An ev already stored (same id, the latest of its type:
// an attempt cut short) is not an error.
func (b *Bus) PublishAfter(ctx context.Context, ev *runbookv1.Event, last uint64) (uint64, error) {
	msg, err := b.message(ev)
	if err != nil {
		return 0, err
	}
	ack, err := b.publish(ctx, msg, jetstream.WithMsgID(ev.Id), jetstream.WithExpectLastSequencePerSubject(last))
	if err != nil {
		if !wrongLast(err) {
			return 0, fmt.Errorf("publish %s (%s) after sequence %d: %w", msg.Subject, ev.Id, last, err)
		}
		// The stream compares before it deduplicates: the newer event
		// may be this one, stored by an attempt cut short.
		latest, lerr := b.LastEvent(ctx, ev.RunId, ev.Type)
		if lerr != nil {
			return 0, fmt.Errorf("%s for run %s after sequence %d: %w (and reading the latest: %v)", ev.Type, ev.RunId, last, ErrNotLatest, lerr)
		}
		if latest != nil && latest.Event.GetId() == ev.Id {
			return latest.Seq, nil
		}
		return 0, fmt.Errorf("%s for run %s after sequence %d: %w", ev.Type, ev.RunId, last, ErrNotLatest)
	}
	return ack.Sequence, nil
}

func wrongLast(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// jsErrCodeDuplicateInProcess is nats-server's "duplicate message id is in
// process" (a clustered stream, since 2.11): another publish with the same
// Nats-Msg-Id is being stored right now.
const jsErrCodeDuplicateInProcess = 10158

func inProcess(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == jsErrCodeDuplicateInProcess
}

// publish stores msg. A clustered stream answers a publish whose message
// id another publish is still storing with "in process": it is asked again
// once that one is decided (then the answer is a duplicate, a wrong last
// sequence, or ours stored).
func (b *Bus) publish(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ack, err := b.js.PublishMsg(ctx, msg, opts...)
	for wait := 5 * time.Millisecond; inProcess(err) && ctx.Err() == nil && wait < 2*time.Second; wait *= 2 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		ack, err = b.js.PublishMsg(ctx, msg, opts...)
	}
	if err == nil {
		b.published(ack.Sequence)
	}
	return ack, err
}

// PublishSample stores a metric sample on RUNBOOK_METRICS.
func (b *Bus) PublishSample(ctx context.Context, s *runbookv1.MetricSample) error {
	if s.Time == nil {
		s.Time = timestamppb.New(b.now())
	}
	data, err := proto.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode sample %s: %w", s.Metric, err)
	}
	msg := nats.NewMsg(MetricSubject(s.RunId, s.Metric))
	msg.Data = data
	msg.Header.Set(HeaderContentType, ContentTypeProto)
	if _, err := b.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish sample %s for run %s: %w", s.Metric, s.RunId, err)
	}
	return nil
}

// Envelope is an event with where it sits in the stream.
type Envelope struct {
	Event   *runbookv1.Event
	Seq     uint64
	Subject string
	// The stored message's headers and bytes, for Publisher.
	header nats.Header
	data   []byte
}

func envelope(ev *runbookv1.Event, seq uint64, subject string, h nats.Header, data []byte) Envelope {
	return Envelope{Event: ev, Seq: seq, Subject: subject, header: h, data: data}
}

// Publisher verifies the stored message's publisher signature and returns
// the key that made it ("" when unsigned). It is checked on demand (audit
// verify): every reader need not pay for an Ed25519 verification.
func (e Envelope) Publisher() (string, error) { return Publisher(e.header, e.data) }

// LastEvent returns the newest event of type typ in run runID, or nil when
// the run has none. With a HistoryCache that holds the run, it is read from
// memory, as RunHistory is.
func (b *Bus) LastEvent(ctx context.Context, runID, typ string) (*Envelope, error) {
	if b.history != nil {
		if e, ok := b.history.last(ctx, runID, typ, max(atLeast(ctx), b.lastPub.Load())); ok {
			return e, nil
		}
	}
	var raw *jetstream.RawStreamMsg
	err := retryRead(ctx, func() (err error) {
		raw, err = b.audit.GetLastMsgForSubject(ctx, Subject(runID, typ))
		return err
	})
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("read last %s of run %s: %w", typ, runID, err)
	}
	ev, err := DecodeRaw(raw)
	if err != nil {
		return nil, err
	}
	e := envelope(ev, raw.Sequence, raw.Subject, raw.Header, raw.Data)
	return &e, nil
}

// RunHistory returns every event of one run in stream order. Events that
// cannot be decoded are skipped (the consumers dead-letter them). With a
// HistoryCache (UseHistory) that holds the run, it is read from memory,
// seeing the stream at least up to what the caller has seen (AtLeast) and
// what this bus published.
func (b *Bus) RunHistory(ctx context.Context, runID string) ([]Envelope, error) {
	if b.history != nil {
		if h, ok := b.history.read(ctx, runID, max(atLeast(ctx), b.lastPub.Load())); ok {
			return h, nil
		}
	}
	var out []Envelope
	err := b.Scan(ctx, []string{RunSubjects(runID)}, 0, func(e Envelope) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read history of run %s: %w", runID, err)
	}
	return out, nil
}

// Scan calls fn for every event on the audit stream matching filters, from
// sequence startSeq (0: the beginning) up to the end of the stream as it was
// when Scan started, in order.
//
// A read the cluster cannot serve for a moment (no responders while a
// stream leader is elected, a timeout, JetStream temporarily unavailable)
// is retried with backoff until ctx ends, from the sequence after the last
// event fn was given: fn sees every event once, in order.
func (b *Bus) Scan(ctx context.Context, filters []string, startSeq uint64, fn func(Envelope) error) error {
	next := startSeq
	var fnErr error
	return retryRead(ctx, func() error {
		cons, err := b.ordered(ctx, filters, next)
		if err != nil {
			return err
		}
		defer b.dropConsumer(cons)
		return drain(ctx, cons, filters, func(msg jetstream.Msg, meta *jetstream.MsgMetadata) error {
			next = meta.Sequence.Stream + 1
			if ev, derr := Decode(msg.Subject(), msg.Headers(), msg.Data(), meta.Timestamp); derr == nil {
				if fnErr = fn(envelope(ev, meta.Sequence.Stream, msg.Subject(), msg.Headers(), msg.Data())); fnErr != nil {
					return permanentRead{fnErr}
				}
			}
			return nil
		})
	})
}

// permanentRead carries a Scan callback's error through retryRead
// unretried.
type permanentRead struct{ err error }

func (p permanentRead) Error() string { return p.err.Error() }
func (p permanentRead) Unwrap() error { return p.err }

// retryRead runs read until it succeeds, fails for good, or ctx ends,
// retrying (50 ms, doubling, at most 1 s apart) the errors of a cluster
// that cannot serve reads for a moment: a stream leader being elected, a
// node restarting, a reconnecting client.
func retryRead(ctx context.Context, read func() error) error {
	wait := 50 * time.Millisecond
	for {
		err := read()
		if err == nil {
			return nil
		}
		var p permanentRead
		if errors.As(err, &p) {
			return p.err
		}
		if !Transient(err) || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (retried until %w)", err, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// Transient reports whether err is one a retry may cure: a cluster that
// cannot answer for a moment (a leader being elected, a node restarting, a
// reconnecting client, a timeout).
func Transient(err error) bool {
	var api *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, jetstream.ErrNoHeartbeat), errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected):
		return true
	case errors.As(err, &api):
		// 503: JetStream (or the stream's cluster group) temporarily
		// unavailable; 408: the request timed out on the server.
		return api.Code == 503 || api.Code == 408
	}
	return false
}

// dropConsumer deletes a finished scan's ordered consumer at once instead
// of leaving it to the server's inactivity threshold: a caller polling
// RunHistory would otherwise pile consumers up to the server's limit.
func (b *Bus) dropConsumer(cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = b.js.DeleteConsumer(ctx, info.Stream, info.Name) // best effort: the threshold still applies
}

// RunSamples returns the metric samples of one run kept on RUNBOOK_METRICS
// (subjects runbook_metrics.<run_id>.<metric>), in stream order. Samples
// that cannot be decoded are skipped.
func (b *Bus) RunSamples(ctx context.Context, runID string) ([]*runbookv1.MetricSample, error) {
	filters := []string{MetricsPrefix + "." + runID + ".>"}
	st, err := b.js.Stream(ctx, MetricsStream)
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", MetricsStream, err)
	}
	var out []*runbookv1.MetricSample
	err = retryRead(ctx, func() error {
		out = out[:0] // a retry reads them all again
		cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverAllPolicy})
		if err != nil {
			return fmt.Errorf("ordered consumer on %v: %w", filters, err)
		}
		defer b.dropConsumer(cons)
		return drain(ctx, cons, filters, func(msg jetstream.Msg, _ *jetstream.MsgMetadata) error {
			s := &runbookv1.MetricSample{}
			if proto.Unmarshal(msg.Data(), s) == nil {
				out = append(out, s)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read samples of run %s: %w", runID, err)
	}
	return out, nil
}

// drain calls fn for every message of an ordered consumer up to the end
// of its stream as it was when drain started, in order, with the message's
// metadata (stream sequence, timestamp).
func drain(ctx context.Context, cons jetstream.Consumer, filters []string, fn func(jetstream.Msg, *jetstream.MsgMetadata) error) error {
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer info on %v: %w", filters, err)
	}
	if info.NumPending == 0 {
		return nil
	}
	for {
		batch, err := cons.Fetch(512, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return fmt.Errorf("fetch %v: %w", filters, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			meta, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("metadata: %w", err)
			}
			if err := fn(msg, meta); err != nil {
				return err
			}
			if meta.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("fetch %v: %w", filters, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if got == 0 {
			return fmt.Errorf("fetch %v: no messages although %d were pending", filters, info.NumPending)
		}
	}
}

// Follow calls fn for every event matching filters from startSeq on (0: the
// beginning), live, until ctx ends or fn returns an error (io.EOF from fn
// ends Follow without error).
//
// With a HistoryCache that holds the run, following events of one run
// (filters naming its subjects) is served from memory: no consumer on the
// server per follower.
func (b *Bus) Follow(ctx context.Context, filters []string, startSeq uint64, fn func(Envelope) error) error {
	if run, types, ok := oneRunTypes(filters); ok && b.history != nil {
		served, err := b.history.followRun(ctx, run, types, &startSeq, fn)
		if served {
			return err
		}
	}
	cons, err := b.ordered(ctx, filters, startSeq)
	if err != nil {
		return err
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("follow %v: %w", filters, err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("follow %v: %w", filters, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
		ev, derr := Decode(msg.Subject(), msg.Headers(), msg.Data(), meta.Timestamp)
		if derr != nil {
			continue
		}
		if err := fn(envelope(ev, meta.Sequence.Stream, msg.Subject(), msg.Headers(), msg.Data())); err != nil {
			if errors.Is(err, errStopFollow) {
				return nil
			}
			return err
		}
	}
}

// ordered makes an ordered consumer on the audit stream from startSeq (0:
// the beginning).
func (b *Bus) ordered(ctx context.Context, filters []string, startSeq uint64) (jetstream.Consumer, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverAllPolicy}
	if startSeq > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = startSeq
	}
	cons, err := b.audit.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ordered consumer on %v: %w", filters, err)
	}
	return cons, nil
}

var errStopFollow = errors.New("stop following")

// oneRunTypes reports whether filters are concrete subjects of one run
// (runbook.<run>.<type>, no wildcards), and their types.
func oneRunTypes(filters []string) (run string, types map[string]bool, ok bool) {
	types = map[string]bool{}
	for _, f := range filters {
		r, t, err := ParseSubject(f)
		if err != nil || strings.ContainsAny(f, "*>") || (run != "" && r != run) {
			return "", nil, false
		}
		run, types[t] = r, true
	}
	return run, types, run != ""
}

// StopFollow, returned by a Follow callback, ends Follow without error.
func StopFollow() error { return errStopFollow }
