package pgstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter/report"
)

// Mismatch is one difference between the audit stream and the database.
type Mismatch struct {
	RunID   string
	EventID string // empty for a run's report or summary
	Seq     uint64 // the event's stream sequence, 0 when none
	Problem string
}

func (m Mismatch) String() string {
	switch {
	case m.EventID == "":
		return fmt.Sprintf("run %s: %s", m.RunID, m.Problem)
	case m.Seq == 0:
		return fmt.Sprintf("run %s event %s: %s", m.RunID, m.EventID, m.Problem)
	}
	return fmt.Sprintf("run %s event %s (seq %d): %s", m.RunID, m.EventID, m.Seq, m.Problem)
}

// VerifyStats counts what Verify checked.
type VerifyStats struct {
	Events, Runs, Reports int
}

// verifyRun is what Verify keeps of a run while reading the stream.
type verifyRun struct {
	chain  []byte
	count  int
	events []*runbookv1.Event // every event until its report.ready
	report *runbookv1.Event   // the first report.ready
	before []*runbookv1.Event // the events the report was built from
}

// Verify reads the audit stream (scan calls its callback for every event,
// in stream order) side by side with the events table in sequence order,
// and reports every difference: an event missing, stored twice or under
// another sequence or run, a payload that differs, a hash chain that does
// not match the one recomputed from the stream (sha256 over the run's
// events in stream order, see ChainNext), a row the stream does not have,
// a run row whose chain head or event count is off, and a stored report
// that is not the run's report.ready byte for byte or not the report
// re-derived from the run's events before it.
func (s *Store) Verify(ctx context.Context, scan func(fn func(eventbus.Envelope) error) error) ([]Mismatch, VerifyStats, error) {
	var out []Mismatch
	var st VerifyStats
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return nil, st, fmt.Errorf("verify: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, `SELECT stream_seq, event_id, run_id, payload::text, chain FROM events ORDER BY stream_seq`)
	if err != nil {
		return nil, st, fmt.Errorf("read events: %w", err)
	}
	type row struct {
		seq            int64
		id, run, paylo string
		chain          []byte
	}
	var cur *row
	nextRow := func() error {
		cur = nil
		if !rows.Next() {
			return rows.Err()
		}
		r := &row{}
		if err := rows.Scan(&r.seq, &r.id, &r.run, &r.paylo, &r.chain); err != nil {
			return err
		}
		cur = r
		return nil
	}
	extra := func(r *row) {
		out = append(out, Mismatch{r.run, r.id, uint64(r.seq), "stored but not in the stream"})
	}
	if err := nextRow(); err != nil {
		rows.Close()
		return nil, st, fmt.Errorf("read events: %w", err)
	}
	runs := map[string]*verifyRun{}
	var order []string
	err = scan(func(env eventbus.Envelope) error {
		ev := env.Event
		st.Events++
		id, run, seq := ev.GetId(), ev.GetRunId(), env.Seq
		vr := runs[run]
		if vr == nil {
			vr = &verifyRun{}
			runs[run] = vr
			order = append(order, run)
		}
		chain, err := ChainNext(vr.chain, seq, ev)
		if err != nil {
			return err
		}
		vr.chain = chain
		vr.count++
		if vr.report == nil {
			if ev.GetReportReady() != nil {
				vr.report, vr.before, vr.events = ev, vr.events, nil
			} else {
				vr.events = append(vr.events, ev) // as the reporter read its history
			}
		}
		for cur != nil && uint64(cur.seq) < seq {
			extra(cur)
			if err := nextRow(); err != nil {
				return fmt.Errorf("read events: %w", err)
			}
		}
		if cur == nil || uint64(cur.seq) > seq {
			out = append(out, Mismatch{run, id, seq, "missing from the database"})
			return nil
		}
		r := cur
		if err := nextRow(); err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		switch {
		case r.id != id:
			out = append(out, Mismatch{run, id, seq, "the database has event " + r.id + " at this sequence"})
			return nil
		case r.run != run:
			out = append(out, Mismatch{run, id, seq, "stored under run " + r.run})
		}
		got := &runbookv1.Event{}
		if err := protojson.Unmarshal([]byte(r.paylo), got); err != nil {
			out = append(out, Mismatch{run, id, seq, "stored payload unreadable: " + err.Error()})
		} else if !proto.Equal(got, ev) {
			out = append(out, Mismatch{run, id, seq, "stored payload differs from the stream"})
		}
		if !bytes.Equal(r.chain, chain) {
			out = append(out, Mismatch{run, id, seq, "hash chain broken: the stored link is not the one recomputed from the stream"})
		}
		return nil
	})
	if err != nil {
		rows.Close()
		return nil, st, fmt.Errorf("verify: %w", err)
	}
	for cur != nil {
		extra(cur)
		if err := nextRow(); err != nil {
			rows.Close()
			return nil, st, fmt.Errorf("read events: %w", err)
		}
	}
	rows.Close()

	type runRow struct {
		chain []byte
		count int
	}
	stored := map[string]runRow{}
	rrows, err := tx.Query(ctx, `SELECT run_id, chain, events FROM runs`)
	if err != nil {
		return nil, st, fmt.Errorf("read runs: %w", err)
	}
	for rrows.Next() {
		var id string
		var r runRow
		if err := rrows.Scan(&id, &r.chain, &r.count); err != nil {
			rrows.Close()
			return nil, st, fmt.Errorf("read runs: %w", err)
		}
		stored[id] = r
	}
	rrows.Close()
	if err := rrows.Err(); err != nil {
		return nil, st, fmt.Errorf("read runs: %w", err)
	}
	reports := map[string]string{}
	prows, err := tx.Query(ctx, `SELECT run_id, report_json FROM reports`)
	if err != nil {
		return nil, st, fmt.Errorf("read reports: %w", err)
	}
	for prows.Next() {
		var run, js string
		if err := prows.Scan(&run, &js); err != nil {
			prows.Close()
			return nil, st, fmt.Errorf("read reports: %w", err)
		}
		reports[run] = js
	}
	prows.Close()
	if err := prows.Err(); err != nil {
		return nil, st, fmt.Errorf("read reports: %w", err)
	}

	st.Runs = len(order)
	for _, run := range order {
		vr := runs[run]
		r, ok := stored[run]
		delete(stored, run)
		switch {
		case !ok:
			out = append(out, Mismatch{run, "", 0, "no run row in the database"})
		case r.count != vr.count:
			out = append(out, Mismatch{run, "", 0, fmt.Sprintf("the run row counts %d events, the stream has %d", r.count, vr.count)})
		case !bytes.Equal(r.chain, vr.chain):
			out = append(out, Mismatch{run, "", 0, "the run's hash chain head differs from the one recomputed from the stream"})
		}
		js, has := reports[run]
		delete(reports, run)
		if vr.report == nil {
			if has {
				out = append(out, Mismatch{run, "", 0, "a report is stored but the stream has no report.ready"})
			}
			continue
		}
		st.Reports++
		if !has {
			out = append(out, Mismatch{run, vr.report.GetId(), 0, "report.ready in the stream, no report stored"})
			continue
		}
		if want := vr.report.GetReportReady().GetReportJson(); js != want {
			out = append(out, Mismatch{run, vr.report.GetId(), 0, "stored report differs from the report.ready payload"})
		}
		res, err := report.Generate(run, vr.before)
		if err != nil {
			out = append(out, Mismatch{run, "", 0, "report cannot be re-derived: " + err.Error()})
		} else if string(res.JSON) != js {
			out = append(out, Mismatch{run, "", 0, "stored report differs from the one re-derived from the events"})
		}
	}
	for run := range stored {
		out = append(out, Mismatch{run, "", 0, "a run is stored that the stream does not have"})
	}
	for run := range reports {
		out = append(out, Mismatch{run, "", 0, "a report is stored for a run the stream does not have"})
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
	return out, st, nil
}
