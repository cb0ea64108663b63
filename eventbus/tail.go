package eventbus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Batch is a run of events of the audit stream delivered by Tail, in
// stream order.
type Batch struct {
	Events []Envelope
	// LastSeq is the stream sequence of the batch's last message (an
	// undecodable message is left out of Events but still counted here).
	LastSeq uint64
	// CaughtUp: nothing was pending after the batch's last message when it
	// was delivered: the reader is at the end of the stream.
	CaughtUp bool
	// Skipped are the batch's messages that are not events of the schema
	// (Decode refused them), in stream order: left out of Events, for the
	// reader to record.
	Skipped []Skipped
}

// Skipped is a message of the audit stream that Decode refused: garbage,
// a truncated or unknown payload, an unknown event type.
type Skipped struct {
	Seq     uint64
	Subject string
	// Time is when the stream stored it.
	Time time.Time
	// Err says why it is no event (it wraps ErrDecode).
	Err error
	// Header and Data are the message as stored.
	Header nats.Header
	Data   []byte
}

// Tail delivers every event of the audit stream from sequence startSeq on
// (0 or 1: the beginning), live, in batches of at most max events, until
// ctx ends (then it returns nil) or fn returns an error (Tail returns it).
// A batch holds what had arrived when the previous one was done, so under
// load batches grow up to max and when idle each event comes at once. If
// the stream has nothing from startSeq on, fn first gets an empty batch
// with CaughtUp set. fn is never called concurrently; while it runs,
// reading pauses (flow control holds the rest on the server).
//
// The reader is an ordered consumer: it loses nothing and reorders
// nothing, and is recreated from the next sequence if it fails.
func (b *Bus) Tail(ctx context.Context, startSeq uint64, max int, fn func(Batch) error) error {
	if max <= 0 {
		max = 512
	}
	next := max64(startSeq, 1)
	backoff := 100 * time.Millisecond
	first := true
	for {
		err := b.tailFrom(ctx, next, max, first, func(bt Batch) error {
			first = false
			if bt.LastSeq >= next {
				next = bt.LastSeq + 1
			}
			return fn(bt)
		})
		if ctx.Err() != nil {
			return nil
		}
		var fe fnError
		if errors.As(err, &fe) {
			return fe.err
		}
		// The reader failed (server restart, consumer lost): recreate it
		// from the next sequence after a pause.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// fnError marks an error of Tail's callback, which ends Tail.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

func max64(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

type tailMsg struct {
	env     *Envelope
	skipped *Skipped
	seq     uint64
	pending uint64
}

func (b *Bus) tailFrom(ctx context.Context, start uint64, max int, announce bool, fn func(Batch) error) error {
	cons, err := b.ordered(ctx, []string{SubjectPrefix + ".>"}, start)
	if err != nil {
		return err
	}
	if announce {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("tail: consumer info: %w", err)
		}
		if info.NumPending == 0 {
			if err := fn(Batch{LastSeq: start - 1, CaughtUp: true}); err != nil {
				return fnError{err}
			}
		}
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * max))
	if err != nil {
		return fmt.Errorf("tail: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()

	msgs := make(chan tailMsg, max)
	readErr := make(chan error, 1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(msgs)
		for {
			msg, err := it.Next()
			if err != nil {
				readErr <- err
				return
			}
			meta, err := msg.Metadata()
			if err != nil {
				readErr <- fmt.Errorf("tail: metadata: %w", err)
				return
			}
			m := tailMsg{seq: meta.Sequence.Stream, pending: meta.NumPending}
			if ev, derr := Decode(msg.Subject(), msg.Headers(), msg.Data(), meta.Timestamp); derr == nil {
				e := envelope(ev, m.seq, msg.Subject(), msg.Headers(), msg.Data())
				m.env = &e
			} else {
				m.skipped = &Skipped{Seq: m.seq, Subject: msg.Subject(), Time: meta.Timestamp, Err: derr, Header: msg.Headers(), Data: msg.Data()}
			}
			select {
			case msgs <- m:
			case <-rctx.Done():
				readErr <- rctx.Err() // the only send: readErr has room
				return
			}
		}
	}()

	add := func(bt *Batch, m tailMsg) {
		if m.env != nil {
			bt.Events = append(bt.Events, *m.env)
		}
		if m.skipped != nil {
			bt.Skipped = append(bt.Skipped, *m.skipped)
		}
		bt.LastSeq = m.seq
		bt.CaughtUp = m.pending == 0
	}
	for {
		var m tailMsg
		var ok bool
		select {
		case m, ok = <-msgs:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			return fmt.Errorf("tail: %w", <-readErr)
		}
		bt := Batch{Events: make([]Envelope, 0, min(max, len(msgs)+1))}
		add(&bt, m)
	fill:
		for len(bt.Events) < max {
			select {
			case m, ok := <-msgs:
				if !ok {
					break fill
				}
				add(&bt, m)
			default:
				break fill
			}
		}
		if err := fn(bt); err != nil {
			return fnError{err}
		}
	}
}

// LastSeq is the audit stream's last sequence (0 when it is empty).
func (b *Bus) LastSeq(ctx context.Context) (uint64, error) {
	info, err := b.audit.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s info: %w", AuditStream, err)
	}
	return info.State.LastSeq, nil
}
