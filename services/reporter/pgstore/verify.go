package pgstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/report"
)

// Mismatch is one difference between the audit stream and the database.
type Mismatch struct {
	RunID   string // empty for the projection's position
	EventID string // empty for a run's report or summary
	Seq     uint64 // the event's stream sequence, 0 when none
	Problem string
}

func (m Mismatch) String() string {
	switch {
	case m.RunID == "":
		return m.Problem
	case m.EventID == "":
		return fmt.Sprintf("run %s: %s", m.RunID, m.Problem)
	case m.Seq == 0:
		return fmt.Sprintf("run %s event %s: %s", m.RunID, m.EventID, m.Problem)
	}
	return fmt.Sprintf("run %s event %s (seq %d): %s", m.RunID, m.EventID, m.Seq, m.Problem)
}

// VerifyStats counts what Verify checked.
type VerifyStats struct {
	Events, Runs, Reports, Approvals int
}

// verifyRun is what Verify keeps of a run while reading the stream.
type verifyRun struct {
	fold   *runFold           // the projection's fold of the run (runFold.apply)
	events []*runbookv1.Event // every event until its report.ready
	report *eventbus.Envelope // the first report.ready
	before []*runbookv1.Event // the events the report was built from
}

// columnProblem words a column whose stored value is not the stream's.
func columnProblem(table, key string, d colDiff) string {
	return fmt.Sprintf("table %s, row %s, column %s: stored %s, the stream gives %s", table, key, d.column, d.stored, d.want)
}

// Verify reads the audit stream (scan calls its callback for every event,
// in stream order) side by side with the events table in sequence order,
// folds it as the projection does (runFold.apply: reporter.Fold and the
// hash chain) and reports every difference:
//
//   - events: an event missing, stored twice or under another sequence or
//     run, a payload that differs, a hash chain that does not match the one
//     recomputed from the stream (sha256 over the run's events in stream
//     order, see ChainNext), a row the stream does not have, and any other
//     column (type, subject, time, actor, kept) not the stream's;
//   - runs: a run row missing or extra, or any column (status, phase,
//     change id, title, requester, risk, times, flags, event count, last
//     sequence, chain head) not the one the fold of the run's events gives;
//   - approvals: a decision without its row, a row without its decision,
//     or any column (role, approver, decision, comment, reason, time, actor,
//     plan hash) not the event's;
//   - reports: a report missing or extra, any column not the run's first
//     report.ready's, or a report that is not the one re-derived from the
//     run's events before it;
//   - projection_state: a position that is not the stream's last event.
//
// A column's problem names the table, the row's key, the column, the
// stored value and the value the stream gives.
func (s *Store) Verify(ctx context.Context, scan func(fn func(eventbus.Envelope) error) error) ([]Mismatch, VerifyStats, error) {
	var out []Mismatch
	var st VerifyStats
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return nil, st, fmt.Errorf("verify: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var stored eventRow
	rows, err := tx.Query(ctx, `SELECT `+selectList(stored.cols())+` FROM events ORDER BY stream_seq`)
	if err != nil {
		return nil, st, fmt.Errorf("read events: %w", err)
	}
	var cur *eventRow
	nextRow := func() error {
		cur = nil
		if !rows.Next() {
			return rows.Err()
		}
		r := &eventRow{}
		if err := rows.Scan(colTargets(r.cols())...); err != nil {
			return err
		}
		cur = r
		return nil
	}
	extra := func(r *eventRow) {
		out = append(out, Mismatch{r.RunID, r.EventID, uint64(r.Seq), "stored but not in the stream"})
	}
	if err := nextRow(); err != nil {
		rows.Close()
		return nil, st, fmt.Errorf("read events: %w", err)
	}
	runs := map[string]*verifyRun{}
	var order []string
	var approvals []approvalRow // the stream's decisions, in stream order
	var lastSeq uint64
	err = scan(func(env eventbus.Envelope) error {
		ev := env.Event
		st.Events++
		id, run, seq := ev.GetId(), ev.GetRunId(), env.Seq
		lastSeq = seq
		vr := runs[run]
		if vr == nil {
			vr = &verifyRun{fold: &runFold{Fold: reporter.NewFold(run)}}
			runs[run] = vr
			order = append(order, run)
		}
		if err := vr.fold.apply(env); err != nil {
			return err
		}
		if a, ok := newApprovalRow(env); ok {
			approvals = append(approvals, a)
		}
		if vr.report == nil {
			if ev.GetReportReady() != nil {
				vr.report, vr.before, vr.events = &env, vr.events, nil
			} else {
				vr.events = append(vr.events, ev) // as the reporter read its history
			}
		}
		for cur != nil && uint64(cur.Seq) < seq {
			extra(cur)
			if err := nextRow(); err != nil {
				return fmt.Errorf("read events: %w", err)
			}
		}
		if cur == nil || uint64(cur.Seq) > seq {
			out = append(out, Mismatch{run, id, seq, "missing from the database"})
			return nil
		}
		r := cur
		if err := nextRow(); err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		switch {
		case r.EventID != id:
			out = append(out, Mismatch{run, id, seq, "the database has event " + r.EventID + " at this sequence"})
			return nil
		case r.RunID != run:
			out = append(out, Mismatch{run, id, seq, "stored under run " + r.RunID})
		}
		got := &runbookv1.Event{}
		if err := protojson.Unmarshal([]byte(r.Payload), got); err != nil {
			out = append(out, Mismatch{run, id, seq, "stored payload unreadable: " + err.Error()})
		} else if !proto.Equal(got, ev) {
			out = append(out, Mismatch{run, id, seq, "stored payload differs from the stream"})
		}
		if !bytes.Equal(r.Chain, vr.fold.chain) {
			out = append(out, Mismatch{run, id, seq, "hash chain broken: the stored link is not the one recomputed from the stream"})
		}
		want, err := newEventRow(env, vr.fold.chain)
		if err != nil {
			return err
		}
		key := "stream_seq=" + strconv.FormatUint(seq, 10)
		for _, d := range diffCols(r.cols(), want.cols(), "stream_seq", "event_id", "run_id", "payload", "chain") {
			out = append(out, Mismatch{run, id, seq, columnProblem("events", key, d)})
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

	storedRuns, err := readRows(ctx, tx, "runs", func(r *runRow) string { return r.RunID })
	if err != nil {
		return nil, st, err
	}
	storedReports, err := readRows(ctx, tx, "reports", func(r *reportRow) string { return r.RunID })
	if err != nil {
		return nil, st, err
	}
	storedApprovals, err := readRows(ctx, tx, "approvals", func(r *approvalRow) int64 { return r.Seq })
	if err != nil {
		return nil, st, err
	}
	var position int64
	if err := tx.QueryRow(ctx, `SELECT last_seq FROM projection_state`).Scan(&position); err != nil {
		return nil, st, fmt.Errorf("read projection_state: %w", err)
	}

	if uint64(position) != lastSeq {
		out = append(out, Mismatch{Problem: fmt.Sprintf("table projection_state, column last_seq: stored %d, the stream gives %d (its last event)", position, lastSeq)})
	}

	st.Runs = len(order)
	for _, run := range order {
		vr := runs[run]
		key := "run_id=" + run
		want := vr.fold.row()
		r, ok := storedRuns[run]
		switch {
		case !vr.fold.Exists() && ok:
			out = append(out, Mismatch{run, "", 0, "a run row for a run that does not exist (its events are dead letters, or were dead-lettered)"})
		case !vr.fold.Exists():
		case !ok:
			out = append(out, Mismatch{run, "", 0, "no run row in the database"})
		default:
			for _, d := range diffCols(r.cols(), want.cols(), "run_id") {
				out = append(out, Mismatch{run, "", 0, columnProblem("runs", key, d)})
			}
		}
		delete(storedRuns, run)
		js, has := storedReports[run]
		delete(storedReports, run)
		if vr.report == nil {
			if has {
				out = append(out, Mismatch{run, "", 0, "a report is stored but the stream has no report.ready"})
			}
			continue
		}
		st.Reports++
		rid := vr.report.Event.GetId()
		if !has {
			out = append(out, Mismatch{run, rid, 0, "report.ready in the stream, no report stored"})
			continue
		}
		wantReport, _ := newReportRow(*vr.report)
		for _, d := range diffCols(js.cols(), wantReport.cols(), "run_id") {
			out = append(out, Mismatch{run, rid, vr.report.Seq, columnProblem("reports", key, d)})
		}
		res, err := report.Generate(run, vr.before)
		if err != nil {
			out = append(out, Mismatch{run, "", 0, "report cannot be re-derived: " + err.Error()})
		} else if string(res.JSON) != js.ReportJSON {
			out = append(out, Mismatch{run, "", 0, "stored report differs from the one re-derived from the events"})
		}
	}
	for run := range storedRuns {
		out = append(out, Mismatch{run, "", 0, "a run is stored that the stream does not have"})
	}
	for run := range storedReports {
		out = append(out, Mismatch{run, "", 0, "a report is stored for a run the stream does not have"})
	}

	st.Approvals = len(approvals)
	for _, want := range approvals {
		seq := uint64(want.Seq)
		r, ok := storedApprovals[want.Seq]
		delete(storedApprovals, want.Seq)
		if !ok {
			out = append(out, Mismatch{want.RunID, want.EventID, seq, "table approvals: no row for this decision"})
			continue
		}
		key := "stream_seq=" + strconv.FormatInt(want.Seq, 10)
		for _, d := range diffCols(r.cols(), want.cols(), "stream_seq") {
			out = append(out, Mismatch{want.RunID, want.EventID, seq, columnProblem("approvals", key, d)})
		}
	}
	for _, r := range storedApprovals {
		out = append(out, Mismatch{r.RunID, r.EventID, uint64(r.Seq), "table approvals: a row the stream has no decision for"})
	}

	slices.SortStableFunc(out, func(a, b Mismatch) int {
		switch {
		case a.RunID != b.RunID:
			if a.RunID < b.RunID {
				return -1
			}
			return 1
		case a.Seq != b.Seq:
			if a.Seq < b.Seq {
				return -1
			}
			return 1
		}
		return 0
	})
	return out, st, nil
}

// rowType is a projection row type: *runRow, *reportRow, *approvalRow.
type rowType[R any] interface {
	*R
	cols() []col
}

// readRows reads a whole projection table, by key.
func readRows[R any, P rowType[R], K comparable](ctx context.Context, tx pgx.Tx, table string, key func(P) K) (map[K]R, error) {
	var zero R
	rows, err := tx.Query(ctx, `SELECT `+selectList(P(&zero).cols())+` FROM `+table)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	defer rows.Close()
	out := map[K]R{}
	for rows.Next() {
		var r R
		if err := rows.Scan(colTargets(P(&r).cols())...); err != nil {
			return nil, fmt.Errorf("read %s: %w", table, err)
		}
		out[key(&r)] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	return out, nil
}
