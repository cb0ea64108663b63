package reporter_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
)

// A reporter restarted on an in-memory model that has projected more than
// the stream holds (the model outlived a stream recreated under it) stops
// with both sequences, the remedy for a model in memory, and the metrics
// say so. (readmodeltest runs the live and grown-past cases on both models.)
func TestStreamBehindMemory(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Server(t)
	admin := natstest.Bus(t, srv, "admin")
	model := reporter.NewMemory()
	for i := range 7 {
		_, err := admin.Publish(ctx, eventbus.New("A", &runbookv1.Event_DeployStepOutput{DeployStepOutput: &runbookv1.StepOutput{Text: "x"}}, i))
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reporter.Project(ctx, admin, model, 100, nil); err != nil {
		t.Fatal(err)
	}
	js := admin.JetStream()
	if err := js.DeleteStream(ctx, eventbus.AuditStream); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, eventbus.AuditStreamConfig(eventbus.StreamOptions{})); err != nil {
		t.Fatal(err)
	}
	publish(t, admin, invalidRun("B")...)

	reg := prometheus.NewRegistry()
	svc := reporter.New(natstest.Bus(t, srv, "reporter"), reporter.Options{Model: model, TestsGrace: -1},
		slog.New(slog.NewTextHandler(tWriter{t}, nil)), nil, reg)
	done := make(chan error, 1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { done <- svc.Run(rctx) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the reporter did not stop")
	}
	const want = "audit stream RUNBOOK ends at sequence 2 but the read model has projected up to 7: the stream was recreated or truncated; " +
		"investigate, then restart the reporter: its in-memory read model re-projects the stream from the start"
	if !errors.Is(err, reporter.ErrStreamBehind) || err.Error() != want {
		t.Fatalf("Run: %v\nwant %s", err, want)
	}
	m := svc.MetricsForTest()
	if n := testutil.ToFloat64(m.StreamBehind); n != 1 {
		t.Errorf("runbook_projection_stream_behind_total = %v, want 1", n)
	}
	if n := testutil.ToFloat64(m.StreamLast); n != 2 {
		t.Errorf("runbook_audit_stream_last_seq = %v, want 2", n)
	}
	select {
	case <-svc.Ready():
		t.Error("a reporter whose stream is behind said it was ready")
	default:
	}
}

// The stream watch keeps runbook_audit_stream_last_seq up to date while
// all is well.
func TestStreamLastSeqMetric(t *testing.T) {
	srv := natstest.Server(t)
	bus := natstest.Bus(t, srv, "test")
	r := startOpts(t, srv, reporter.Options{StreamCheck: 10 * time.Millisecond, TestsGrace: -1})
	publish(t, bus, requested("A"), requested("B"))
	m := r.svc.MetricsForTest()
	natstest.Eventually(t, 15*time.Second, "the stream's last sequence in the metric", func() bool {
		return testutil.ToFloat64(m.StreamLast) == 2
	})
	if n := testutil.ToFloat64(m.StreamBehind); n != 0 {
		t.Errorf("stream behind counted %v times", n)
	}
}

// The stream is deleted and recreated under a live reporter and grows past
// its position before the watch looks: the projector has read the new
// stream's events on from where it was, so the model's position and the
// event there agree with the stream and CheckStream cannot tell. The
// stream's creation time, changed since the reporter began reading, can:
// the next look stops it.
func TestStreamRecreatedUnderALiveReporter(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Server(t)
	admin := natstest.Bus(t, srv, "admin")
	model := reporter.NewMemory()
	r := startOpts(t, srv, reporter.Options{Model: model, StreamCheck: time.Hour, TestsGrace: -1})
	publish(t, admin, requested("A"), requested("A2"), requested("A3"))
	natstest.Eventually(t, 15*time.Second, "3 events projected", func() bool {
		pos, _ := model.Position(ctx)
		return pos == 3
	})
	js := admin.JetStream()
	old, err := js.Stream(ctx, eventbus.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, eventbus.AuditStream); err != nil {
		t.Fatal(err)
	}
	created, err := js.CreateStream(ctx, eventbus.AuditStreamConfig(eventbus.StreamOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	publish(t, admin, requested("B"), requested("B2"), requested("B3"), requested("B4"), requested("B5"))
	natstest.Eventually(t, 15*time.Second, "the new stream's events 4 and 5 projected after the old one's", func() bool {
		pos, _ := model.Position(ctx)
		return pos == 5
	})
	if _, err := reporter.CheckStream(ctx, admin, model); err != nil {
		t.Fatalf("CheckStream: %v (position and head agree with the new stream)", err)
	}
	err = r.svc.WatchOnceForTest(ctx)
	want := "audit stream RUNBOOK was recreated at " + created.CachedInfo().Created.UTC().Format(time.RFC3339Nano) +
		" while the reporter read it (it began reading the one created at " + old.CachedInfo().Created.UTC().Format(time.RFC3339Nano) +
		"); the read model has projected up to 5, the stream ends at 5: the model may hold events of both; " +
		"investigate, then restart the reporter: its in-memory read model re-projects the stream from the start"
	if !errors.Is(err, reporter.ErrStreamBehind) || err.Error() != want {
		t.Fatalf("watch: %v\nwant %s", err, want)
	}
}
