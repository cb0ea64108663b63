package eventbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// MaxDeliveriesAdvisoryPrefix is where JetStream announces that a
// consumer gave up on a message: its deliveries reached MaxDeliver without
// an ack or a term — each delivery's handler died, hung or handed the
// message back. The server sends it once, on
// <prefix>.<stream>.<consumer>, and nobody is told again.
const MaxDeliveriesAdvisoryPrefix = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"

// MaxDeliveriesAdvisory is the subject of the MAX_DELIVERIES advisories
// of one consumer of stream.
func MaxDeliveriesAdvisory(stream, consumer string) string {
	return MaxDeliveriesAdvisoryPrefix + "." + stream + "." + consumer
}

// maxDeliveries is the advisory's body (nats-server's
// JSConsumerDeliveryExceededAdvisory), the fields we read.
type maxDeliveries struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// watchMaxDeliveries subscribes to the consumer's MAX_DELIVERIES
// advisories until ctx ends: a message whose last delivery never got an
// outcome (its process was killed, or it was handed back at shutdown) is
// recorded as event.dead_lettered, as the router records one whose handler
// kept failing. Every replica of the consumer hears the advisory and
// publishes the same dead letter (its id is the consumer and the
// sequence): the stream keeps one.
//
// stop unsubscribes and lets the dead letters being published finish for
// up to grace.
func (r *Router) watchMaxDeliveries() (stop func(grace time.Duration), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	subject := MaxDeliveriesAdvisory(AuditStream, r.opts.Durable)
	sub, err := r.bus.nc.Subscribe(subject, func(m *nats.Msg) {
		var a maxDeliveries
		if err := json.Unmarshal(m.Data, &a); err != nil || a.StreamSeq == 0 {
			r.log.Error("unreadable MAX_DELIVERIES advisory", "subject", m.Subject, "err", err)
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.exhausted(ctx, a)
		}()
	})
	if err == nil {
		// The subscription is in place on the server before the consumer
		// delivers: no advisory of this consumer is missed while starting.
		if err = r.bus.nc.Flush(); err != nil {
			_ = sub.Unsubscribe()
		}
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	return func(grace time.Duration) {
		_ = sub.Unsubscribe()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(grace):
		}
		cancel()
		<-done
	}, nil
}

// exhausted publishes the dead letter of the message a MAX_DELIVERIES
// advisory names, retrying for a minute (the server never repeats the
// advisory).
func (r *Router) exhausted(ctx context.Context, a maxDeliveries) {
	log := r.log.With("seq", a.StreamSeq, "delivery", a.Deliveries)
	deadline := time.Now().Add(time.Minute)
	for wait := 200 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := r.publishExhausted(ctx, a, log)
		if err == nil {
			return
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			log.Error("MAX_DELIVERIES: the dead letter could not be published: the message is lost to this consumer, unrecorded", "err", err)
			return
		}
		log.Warn("MAX_DELIVERIES: dead letter not published yet; retrying", "err", err, "after", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
}

func (r *Router) publishExhausted(ctx context.Context, a maxDeliveries, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	raw, err := r.bus.audit.GetMsg(ctx, a.StreamSeq)
	if err != nil {
		return fmt.Errorf("read the message at sequence %d: %w", a.StreamSeq, err)
	}
	cause := errors.New("no outcome: the handler never acked it (its process died, hung or handed it back at each delivery)")
	exhausted := true
	ev, err := DecodeRaw(raw)
	switch {
	case err != nil:
		cause, exhausted = err, false // never an event: refused, it fails no run
	case r.opts.Keyring != nil:
		if _, perr := r.checkPublisher(ctx, raw.Header, raw.Data, ev); perr != nil {
			var perm *permanentError
			if !errors.As(perr, &perm) {
				return perr // the keyring could not be read: try again
			}
			cause, exhausted = perr, false // forged or unsigned: refused
		}
	}
	dl := DeadLetter(r.opts.Durable, raw.Subject, a.StreamSeq, a.Deliveries, raw.Header, raw.Data, cause)
	if dl == nil {
		log.Error("MAX_DELIVERIES on a subject of no run: nowhere to record it", "subject", raw.Subject, "reason", cause)
		return nil
	}
	dl.GetEventDeadLettered().Exhausted = exhausted
	if _, err := r.bus.Publish(ctx, dl); err != nil {
		return fmt.Errorf("publish the dead letter: %w", err)
	}
	typ := "unknown"
	if ev != nil {
		typ = ev.GetType()
	}
	r.metrics.DeadLettered.WithLabelValues(r.opts.Durable).Inc()
	r.metrics.Handled.WithLabelValues(r.opts.Durable, typ, "dead_letter").Inc()
	log.Error("event dead-lettered: its deliveries ran out without an outcome", "subject", raw.Subject, "run_id", dl.GetRunId(),
		"event", typ, "reason", cause, "exhausted", exhausted)
	return nil
}
