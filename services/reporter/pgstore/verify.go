package pgstore

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter/report"
)

// Mismatch is one difference between the audit stream and the database.
type Mismatch struct {
	RunID   string
	EventID string // empty for a run's report
	Problem string
}

func (m Mismatch) String() string {
	if m.EventID == "" {
		return fmt.Sprintf("run %s: %s", m.RunID, m.Problem)
	}
	return fmt.Sprintf("run %s event %s: %s", m.RunID, m.EventID, m.Problem)
}

type storedEvent struct {
	runID   string
	seq     *int64
	payload string
}

// Verify compares the database with the audit stream (every event, in
// stream order): each stream event is stored once with an equal payload
// (and its sequence, when stored), nothing else is stored, and each stored
// report is the run's report.ready byte for byte and the report re-derived
// from the run's events before it.
func (s *Store) Verify(ctx context.Context, stream []eventbus.Envelope) ([]Mismatch, error) {
	stored := map[string]storedEvent{}
	rows, err := s.pool.Query(ctx, `SELECT event_id, run_id, stream_seq, payload::text FROM events`)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	for rows.Next() {
		var id string
		var e storedEvent
		if err := rows.Scan(&id, &e.runID, &e.seq, &e.payload); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read events: %w", err)
		}
		stored[id] = e
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	reports := map[string]string{}
	rows, err = s.pool.Query(ctx, `SELECT run_id, report_json FROM reports`)
	if err != nil {
		return nil, fmt.Errorf("read reports: %w", err)
	}
	for rows.Next() {
		var run, js string
		if err := rows.Scan(&run, &js); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read reports: %w", err)
		}
		reports[run] = js
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read reports: %w", err)
	}

	var out []Mismatch
	seen := map[string]bool{}
	runs := map[string][]*runbookv1.Event{}
	var order []string
	for _, env := range stream {
		ev := env.Event
		id, run := ev.GetId(), ev.GetRunId()
		if _, ok := runs[run]; !ok {
			order = append(order, run)
		}
		runs[run] = append(runs[run], ev)
		if seen[id] {
			continue // a duplicate in the stream is the stream's business
		}
		seen[id] = true
		e, ok := stored[id]
		switch {
		case !ok:
			out = append(out, Mismatch{run, id, "missing from the database"})
			continue
		case e.runID != run:
			out = append(out, Mismatch{run, id, "stored under run " + e.runID})
		case e.seq != nil && uint64(*e.seq) != env.Seq:
			out = append(out, Mismatch{run, id, fmt.Sprintf("stored with sequence %d, the stream has %d", *e.seq, env.Seq)})
		}
		got := &runbookv1.Event{}
		if err := protojson.Unmarshal([]byte(e.payload), got); err != nil {
			out = append(out, Mismatch{run, id, "stored payload unreadable: " + err.Error()})
		} else if !proto.Equal(got, ev) {
			out = append(out, Mismatch{run, id, "stored payload differs from the stream"})
		}
	}
	for id, e := range stored {
		if !seen[id] {
			out = append(out, Mismatch{e.runID, id, "stored but not in the stream"})
		}
	}
	for _, run := range order {
		evs := runs[run]
		i := slices.IndexFunc(evs, func(ev *runbookv1.Event) bool { return ev.GetReportReady() != nil })
		js, has := reports[run]
		delete(reports, run)
		if i < 0 {
			if has {
				out = append(out, Mismatch{run, "", "a report is stored but the stream has no report.ready"})
			}
			continue
		}
		if !has {
			out = append(out, Mismatch{run, "", "report.ready in the stream, no report stored"})
			continue
		}
		if want := evs[i].GetReportReady().GetReportJson(); js != want {
			out = append(out, Mismatch{run, evs[i].GetId(), "stored report differs from the report.ready payload"})
		}
		res, err := report.Generate(run, evs[:i])
		if err != nil {
			out = append(out, Mismatch{run, "", "report cannot be re-derived: " + err.Error()})
		} else if string(res.JSON) != js {
			out = append(out, Mismatch{run, "", "stored report differs from the one re-derived from the events"})
		}
	}
	for run := range reports {
		out = append(out, Mismatch{run, "", "a report is stored for a run the stream does not have"})
	}
	slices.SortStableFunc(out, func(a, b Mismatch) int {
		if a.RunID != b.RunID {
			if a.RunID < b.RunID {
				return -1
			}
			return 1
		}
		return 0
	})
	return out, nil
}
