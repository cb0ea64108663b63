package deployer

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/deployer/steps"
)

// Limits of the live output of one step attempt (deploy.step.output).
const (
	// outputInterval: at most one output event per stream of a step in
	// this time, unless a batch fills up first.
	outputInterval = 250 * time.Millisecond
	// outputBatch is the text that makes a batch go out at once; a line
	// without newline this long goes out as it is.
	outputBatch = 4 << 10
	// outputBudget is the text streamed per step attempt; after it, one
	// truncation note.
	outputBudget = 64 << 10
	// outputQueue is how many writes of the command wait for the
	// publisher; when it is full the rest is not streamed (the command is
	// never slowed down by publishing).
	outputQueue = 256
)

type outputChunk struct {
	stream string
	p      []byte
}

// outputStream publishes one step attempt's output as deploy.step.output
// events (for rollback steps too: the id's list part says which list) from
// its own goroutine. Text is redacted line by line before it leaves, so a
// secret split across two writes is still found.
type outputStream struct {
	pub     func(context.Context, *runbookv1.Event) error
	log     *slog.Logger
	ctx     context.Context
	run     string
	list    string
	index   int32
	attempt int32
	red     *steps.Redactor

	mu      sync.Mutex
	closed  bool
	full    bool // a write did not fit the queue: nothing more is streamed
	dropped int  // bytes the writer side did not queue
	ch      chan outputChunk
	done    chan struct{}

	// publisher goroutine only
	partial  map[string][]byte
	batch    map[string]*strings.Builder
	order    []string // streams with a batch, in the order they began
	sent     int
	over     bool
	notSent  int
	chunk    int
	failed   bool
	lastTrim string
}

// startOutput starts the publisher of one step attempt's output.
func (s *Service) startOutput(ctx context.Context, run, list string, index int, attempt int32, red *steps.Redactor) *outputStream {
	pub := func(ctx context.Context, ev *runbookv1.Event) error {
		_, err := s.bus.Publish(ctx, ev)
		return err
	}
	return newOutputStream(ctx, pub, s.log, run, list, index, attempt, red)
}

func newOutputStream(ctx context.Context, pub func(context.Context, *runbookv1.Event) error, log *slog.Logger, run, list string, index int, attempt int32, red *steps.Redactor) *outputStream {
	o := &outputStream{
		pub: pub, log: log, ctx: context.WithoutCancel(ctx),
		run: run, list: list, index: int32(index), attempt: attempt, red: red,
		ch: make(chan outputChunk, outputQueue), done: make(chan struct{}),
		partial: map[string][]byte{}, batch: map[string]*strings.Builder{},
	}
	go o.loop()
	return o
}

// write is the steps.Output of the attempt: it never blocks.
func (o *outputStream) write(stream string, p []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || o.full {
		o.dropped += len(p)
		return
	}
	select {
	case o.ch <- outputChunk{stream, bytes.Clone(p)}:
	default:
		o.full = true
		o.dropped += len(p)
	}
}

// close flushes what is left and waits until it is published, so the
// step's outcome event comes after its last output event.
func (o *outputStream) close() {
	o.mu.Lock()
	if !o.closed {
		o.closed = true
		close(o.ch)
	}
	o.mu.Unlock()
	<-o.done
}

func (o *outputStream) loop() {
	defer close(o.done)
	tick := time.NewTicker(outputInterval)
	defer tick.Stop()
	for {
		select {
		case c, ok := <-o.ch:
			if !ok {
				o.finish()
				return
			}
			o.feed(c)
		case <-tick.C:
			o.flush()
		}
	}
}

// feed splits a write into lines; whole lines are redacted into the batch.
func (o *outputStream) feed(c outputChunk) {
	if o.over {
		o.notSent += len(c.p)
		return
	}
	buf := append(o.partial[c.stream], c.p...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		o.add(c.stream, string(buf[:i+1]))
		buf = buf[i+1:]
	}
	if len(buf) >= outputBatch {
		// A line this long goes out in pieces (the size cap).
		o.add(c.stream, string(buf))
		buf = nil
	}
	o.partial[c.stream] = append([]byte(nil), buf...)
}

func (o *outputStream) add(stream, text string) {
	b := o.batch[stream]
	if b == nil {
		b = &strings.Builder{}
		o.batch[stream] = b
		o.order = append(o.order, stream)
	}
	b.WriteString(o.red.Redact(text))
	if b.Len() >= outputBatch {
		o.send(stream)
	}
}

// flush publishes the pending batches, oldest stream first.
func (o *outputStream) flush() {
	for len(o.order) > 0 {
		o.send(o.order[0])
	}
}

// send publishes stream's batch, within the attempt's budget.
func (o *outputStream) send(stream string) {
	b := o.batch[stream]
	delete(o.batch, stream)
	for i, s := range o.order {
		if s == stream {
			o.order = append(o.order[:i], o.order[i+1:]...)
			break
		}
	}
	if b == nil || b.Len() == 0 {
		return
	}
	text := b.String()
	if o.over {
		o.notSent += len(text)
		return
	}
	if o.sent+len(text) > outputBudget {
		keep := outputBudget - o.sent
		cut := strings.LastIndexByte(text[:keep], '\n') + 1
		o.notSent += len(text) - cut
		text = text[:cut]
		o.over = true
		o.lastTrim = stream
	}
	o.sent += len(text)
	o.publish(stream, text)
}

// finish flushes partial lines and batches, then says what was not streamed.
func (o *outputStream) finish() {
	for _, stream := range []string{"stdout", "stderr"} {
		if p := o.partial[stream]; len(p) > 0 && !o.over {
			o.add(stream, string(p))
		} else {
			o.notSent += len(p)
		}
		delete(o.partial, stream)
	}
	o.flush()
	o.mu.Lock()
	n := o.notSent + o.dropped
	truncated := o.over || o.full
	o.mu.Unlock()
	if truncated || n > 0 {
		o.publish(or(o.lastTrim, "stdout"), fmt.Sprintf("… output truncated (%d bytes not streamed; the step's tail is in its succeeded/failed event)", n))
	}
}

// publish sends one output event; errors are logged, never fail the step.
func (o *outputStream) publish(stream, text string) {
	if o.failed || text == "" {
		return
	}
	o.chunk++
	ev := eventbus.New(o.run, &runbookv1.Event_DeployStepOutput{DeployStepOutput: &runbookv1.StepOutput{
		Index: o.index, Stream: stream, Text: strings.ToValidUTF8(text, "\uFFFD"),
	}}, o.list, o.index, fmt.Sprintf("attempt-%d", o.attempt), o.chunk)
	ctx, cancel := context.WithTimeout(o.ctx, 5*time.Second)
	defer cancel()
	if err := o.pub(ctx, ev); err != nil {
		// Stop streaming this attempt: later chunks would only wait too.
		o.failed = true
		o.log.Warn("step output not published", "run_id", o.run, "event", ev.GetId(), "err", err)
	}
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
