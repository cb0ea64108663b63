package pgstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter/report"
)

func TestVerify(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	t0 := time.Date(2025, 9, 22, 14, 30, 0, 0, time.UTC)
	var stream []eventbus.Envelope
	add := func(p any) *runbookv1.Event {
		ev := eventbus.New("R", p)
		ev.Time = timestamppb.New(t0.Add(time.Duration(len(stream)) * time.Second))
		stream = append(stream, eventbus.Envelope{Event: ev, Seq: uint64(len(stream) + 1), Subject: eventbus.Subject("R", ev.Type)})
		return ev
	}
	add(&runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-1", Title: "t"}})
	add(&runbookv1.Event_ChangeRejected{ChangeRejected: &runbookv1.ChangeRejected{}})
	evs := []*runbookv1.Event{stream[0].Event, stream[1].Event}
	res, err := report.Generate("R", evs)
	if err != nil {
		t.Fatal(err)
	}
	add(&runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{Status: string(res.Status), ReportJson: string(res.JSON), QcSummary: res.QCSummary}})
	if err := s.ApplyBatch(ctx, 0, stream); err != nil {
		t.Fatal(err)
	}
	verify := func() []string {
		t.Helper()
		ms, _, err := s.Verify(ctx, func(fn func(eventbus.Envelope) error) error {
			for _, e := range stream {
				if err := fn(e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, m.String())
		}
		return out
	}
	if ms := verify(); len(ms) != 0 {
		t.Fatalf("a faithful database has mismatches: %v", ms)
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := s.Pool().Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(`UPDATE events SET payload = jsonb_set(payload, '{changeRequested,title}', '"edited"') WHERE event_id = 'R/change.requested'`)
	if ms := verify(); len(ms) != 1 || ms[0] != "run R event R/change.requested (seq 1): stored payload differs from the stream" {
		t.Errorf("edited payload: %v", ms)
	}
	exec(`DELETE FROM events WHERE event_id = 'R/change.rejected'`)
	if ms := strings.Join(verify(), "\n"); !strings.Contains(ms, "run R event R/change.rejected (seq 2): missing from the database") {
		t.Errorf("deleted row: %v", ms)
	}
	exec(`UPDATE reports SET report_json = report_json || ' '`)
	if ms := strings.Join(verify(), "\n"); !strings.Contains(ms, "re-derived") {
		t.Errorf("edited report: %v", ms)
	}
	// A row edited together with its chain link cannot hide: the next
	// link, and the run's head, no longer follow from the stream.
	exec(`UPDATE events SET chain = '\x00' WHERE stream_seq = 3`)
	if ms := strings.Join(verify(), "\n"); !strings.Contains(ms, "run R event R/report.ready (seq 3): hash chain broken") {
		t.Errorf("broken chain: %v", ms)
	}
}
