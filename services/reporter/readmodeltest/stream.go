package readmodeltest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
)

// syncBuffer is a log destination read while the reporter writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// reporterRun is one reporter running on model until it returns.
type reporterRun struct {
	log  *syncBuffer
	done chan struct{} // closed when Run returned err
	err  error
}

func startReporter(t *testing.T, srv *server.Server, model reporter.ReadModel) *reporterRun {
	t.Helper()
	r := &reporterRun{log: &syncBuffer{}, done: make(chan struct{})}
	svc := reporter.New(natstest.Bus(t, srv, "reporter/test"), reporter.Options{
		Model: model, RetryMin: 20 * time.Millisecond, StreamCheck: 20 * time.Millisecond, TestsGrace: -1,
	}, slog.New(slog.NewTextHandler(r.log, nil)), nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(r.done)
		r.err = svc.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(15 * time.Second):
			t.Errorf("reporter did not stop")
		}
	})
	return r
}

// stopped waits (up to d) for the reporter to return on its own, and
// returns its error as a *reporter.StreamBehindError.
func (r *reporterRun) stopped(t *testing.T, d time.Duration, what string) (error, *reporter.StreamBehindError) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(d):
		t.Fatalf("%s: the reporter still runs after %s; its log:\n%s", what, d, r.log.String())
	}
	err := r.err
	var e *reporter.StreamBehindError
	if !errors.Is(err, reporter.ErrStreamBehind) || !errors.As(err, &e) {
		t.Fatalf("%s: Run returned %v, want a *StreamBehindError", what, err)
	}
	if e.Remedy == "" || !strings.Contains(e.Remedy, "investigate") {
		t.Errorf("%s: remedy %q", what, e.Remedy)
	}
	// Logged at error level, naming both sequences.
	var logged bool
	for line := range strings.Lines(r.log.String()) {
		if strings.Contains(line, "level=ERROR") && strings.Contains(line, fmt.Sprintf("stream_last_seq=%d", e.LastSeq)) &&
			strings.Contains(line, fmt.Sprintf("projected_seq=%d", e.Position)) && strings.Contains(line, err.Error()) {
			logged = true
		}
	}
	if !logged {
		t.Errorf("%s: no error-level log line with both sequences; log:\n%s", what, r.log.String())
	}
	return err, e
}

// PublishRun publishes n events of run on bus (a change.requested, then
// step output) and returns their ids by stream sequence.
func PublishRun(t testing.TB, bus *eventbus.Bus, run string, n int) map[uint64]string {
	t.Helper()
	ids := map[uint64]string{}
	for i := range n {
		var ev *runbookv1.Event
		if i == 0 {
			ev = eventbus.New(run, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-" + run}})
		} else {
			ev = eventbus.New(run, &runbookv1.Event_DeployStepOutput{DeployStepOutput: &runbookv1.StepOutput{Text: fmt.Sprint("line ", i)}}, i)
		}
		seq, err := bus.Publish(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		ids[seq] = ev.GetId()
	}
	return ids
}

// streamBehind: a reporter projects the audit stream; the stream is
// deleted and recreated (an operator's mistake, a restored backup), new
// events go to the new one. The live reporter, a restarted one, and one
// started after the new stream grew past the model's position all stop
// with an error naming the stream's and the model's sequences, and store
// nothing of the new stream.
func streamBehind(t *testing.T, m reporter.ReadModel) {
	ctx := context.Background()
	srv := natstest.Server(t)
	admin := natstest.Bus(t, srv, "admin")
	ids := map[uint64]string{} // the new stream's events by sequence
	publish := func(run string, n int) {
		t.Helper()
		for seq, id := range PublishRun(t, admin, run, n) {
			ids[seq] = id
		}
	}

	live := startReporter(t, srv, m)
	publish("A", 10)
	natstest.Eventually(t, 15*time.Second, "10 events projected", func() bool {
		pos, err := m.Position(ctx)
		return err == nil && pos == 10
	})
	modelEvent := ids[10]

	// The admin deletes the stream and creates it again; new events go to it.
	js := admin.JetStream()
	if err := js.DeleteStream(ctx, eventbus.AuditStream); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, eventbus.AuditStreamConfig(eventbus.StreamOptions{})); err != nil {
		t.Fatal(err)
	}
	clear(ids)
	publish("B", 3)

	// The live reporter sees it at its next look at the stream (the stream
	// may have been empty then, or held some of B's events).
	err, e := live.stopped(t, 15*time.Second, "live reporter")
	if e.Position != 10 || e.LastSeq > 3 || e.ModelEvent != modelEvent {
		t.Errorf("live reporter: %+v", e)
	}
	if want := fmt.Sprintf("audit stream RUNBOOK ends at sequence %d but the read model has projected up to 10: the stream was recreated or truncated; %s", e.LastSeq, e.Remedy); err.Error() != want {
		t.Errorf("live reporter:\n got %s\nwant %s", err, want)
	}

	// Restarted on the same read model: it stops at once.
	err, e = startReporter(t, srv, m).stopped(t, 15*time.Second, "restarted reporter")
	if want := "audit stream RUNBOOK ends at sequence 3 but the read model has projected up to 10: the stream was recreated or truncated; " + e.Remedy; err.Error() != want {
		t.Errorf("restarted reporter:\n got %s\nwant %s", err, want)
	}

	// The new stream grows past the model's position: sequence 10 holds
	// another event than the model stored there.
	publish("B2", 12)
	err, e = startReporter(t, srv, m).stopped(t, 15*time.Second, "reporter on a stream grown past its position")
	if want := fmt.Sprintf("audit stream RUNBOOK holds event %s at sequence 10 but the read model projected event %s there (it has projected up to 10; the stream ends at 15): the stream was recreated; %s",
		ids[10], modelEvent, e.Remedy); err.Error() != want {
		t.Errorf("stream grown past the position:\n got %s\nwant %s", err, want)
	}

	// Nothing of the new stream was stored.
	if seq, id, err := m.Head(ctx); err != nil || seq != 10 || id != modelEvent {
		t.Errorf("head after the stops: %d %q %v, want 10 %s", seq, id, err, modelEvent)
	}
	for _, run := range []string{"B", "B2"} {
		if r, err := m.Run(ctx, run); err != nil || r != nil {
			t.Errorf("run %s of the new stream stored: %+v %v", run, r, err)
		}
	}
	// replay's projection refuses the stream too.
	if _, err := reporter.Project(ctx, admin, m, 100, nil); !errors.Is(err, reporter.ErrStreamBehind) {
		t.Errorf("Project on the new stream: %v, want ErrStreamBehind", err)
	}
}
