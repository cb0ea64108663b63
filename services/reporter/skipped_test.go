package reporter_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// A message of the stream that is no event (here of a type no service
// consumes, so no router will ever see it) is left out of the read model
// — no run — and dead-lettered by the projector once: a second reporter
// that replays the stream from the start publishes no second dead letter.
func TestProjectorDeadLettersWhatItCannotDecode(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	msg := nats.NewMsg("runbook.ODD-1.deploy.exploded")
	msg.Header.Set(eventbus.HeaderContentType, eventbus.ContentTypeJSON)
	msg.Data = []byte(`{"id":"ODD-1/x","runId":"ODD-1","type":"deploy.exploded","deployDone":{}}`)
	ack, err := bus.JetStream().PublishMsg(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	deadLetters := func() []*runbookv1.DeadLettered {
		var out []*runbookv1.DeadLettered
		for _, e := range mustHistory(t, bus, "ODD-1") {
			if d := e.Event.GetEventDeadLettered(); d != nil {
				out = append(out, d)
			}
		}
		return out
	}
	first := start(t, s)
	natstest.Eventually(t, 10*time.Second, "the projector's dead letter", func() bool { return len(deadLetters()) > 0 })
	d := deadLetters()[0]
	if d.GetConsumer() != "reporter" || d.GetOriginalSequence() != ack.Sequence || d.GetOriginalSubject() != msg.Subject || string(d.GetOriginalData()) != string(msg.Data) {
		t.Fatalf("dead letter %+v", d)
	}
	publish(t, bus, invalidRun("AFTER-1")...)
	waitReport(t, bus, "AFTER-1")
	first.stop()
	if run, err := first.svc.Model().Run(context.Background(), "ODD-1"); err != nil || run != nil {
		t.Fatalf("ODD-1 is a run of the read model: %+v %v", run, err)
	}

	second := start(t, s)
	<-second.svc.Ready()
	if n := len(deadLetters()); n != 1 {
		t.Fatalf("%d dead letters after a replay, want 1", n)
	}
	if dl, err := second.svc.Model().DeadLetters(context.Background(), 0); err != nil || len(dl) != 1 {
		t.Fatalf("read model's dead letters: %v %v", dl, err)
	}
}

func mustHistory(t *testing.T, bus *eventbus.Bus, run string) []eventbus.Envelope {
	t.Helper()
	h, err := bus.RunHistory(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
