// Package pgstore is the reporter's ReadModel on PostgreSQL: runs, events,
// reports, approvals and the projection's stream position, so the history
// of every run outlives the reporter and can be queried with SQL.
//
// Events are keyed by their id: a consumer delivery does not carry the
// stream sequence, so Apply dedupes by event id (a redelivery never writes
// twice) and stores the sequence when it is known (the rebuild scan,
// Reconcile, the reporter's own report.ready). projection_state.last_seq
// only moves by one, in the transaction that stores that sequence, so every
// sequence up to it is stored: an Apply with a sequence at or below it is
// skipped without reading the event. A run's status is the runstate fold of
// its stored events, refolded in the transaction that stores a new one.
package pgstore

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/kis-core/runbook/domain/runstate"
	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock key that serialises migrations of
// several reporters starting at once.
const migrationLock = 0x72756e626f6f6b // "runbook"

// Store is the PostgreSQL ReadModel.
type Store struct {
	pool *pgxpool.Pool
}

var _ reporter.ReadModel = (*Store)(nil)

// Open connects to url, applies the pending migrations and returns the store.
// Close it after the consumers that use it have stopped.
func Open(ctx context.Context, url string) (*Store, error) {
	s, err := Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := Migrate(ctx, s.pool); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Connect connects to url without migrating (readers: the audit).
func Connect(ctx context.Context, url string) (*Store, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Close closes the connection pool.
func (s *Store) Close() { s.pool.Close() }

// Pool is the store's connection pool (tests, audit).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Migrate applies the embedded migrations not applied yet, each in its own
// transaction, under an advisory lock.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLock)); err != nil {
		return fmt.Errorf("migration lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrationLock))
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("schema_migrations: %w", err)
	}
	for _, name := range names {
		version := strings.TrimSuffix(strings.TrimPrefix(name, "migrations/"), ".sql")
		sql, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var done bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, version).Scan(&done); err != nil || done {
				return err
			}
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, version)
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", version, err)
		}
	}
	return nil
}

func noise(typ string) bool {
	return typ == "deploy.step.output" || typ == "test.load.progress"
}

var marshal = protojson.MarshalOptions{}

// Apply implements reporter.ReadModel.
func (s *Store) Apply(ctx context.Context, env eventbus.Envelope) (reporter.Applied, error) {
	var a reporter.Applied
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		a, err = apply(ctx, tx, env)
		return err
	})
	if err != nil {
		return reporter.Applied{}, fmt.Errorf("apply %s: %w", env.Event.GetId(), err)
	}
	return a, nil
}

// ApplyBatch applies several envelopes in one transaction (a rebuild).
func (s *Store) ApplyBatch(ctx context.Context, envs []eventbus.Envelope) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, env := range envs {
			if _, err := apply(ctx, tx, env); err != nil {
				return fmt.Errorf("apply %s: %w", env.Event.GetId(), err)
			}
		}
		return nil
	})
}

func apply(ctx context.Context, tx pgx.Tx, env eventbus.Envelope) (reporter.Applied, error) {
	ev := env.Event
	runID := ev.GetRunId()
	// The projection's row first, then the run's: always in this order, so
	// a batch (which keeps the first) and a single Apply cannot deadlock.
	var last int64
	if err := tx.QueryRow(ctx, `SELECT last_seq FROM projection_state FOR UPDATE`).Scan(&last); err != nil {
		return reporter.Applied{}, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO runs (run_id, status) VALUES ($1, $2) ON CONFLICT (run_id) DO NOTHING`, runID, string(runstate.New(runID).Status)); err != nil {
		return reporter.Applied{}, err
	}
	var status string
	var ready bool
	if err := tx.QueryRow(ctx, `SELECT status, report_ready FROM runs WHERE run_id = $1 FOR UPDATE`, runID).Scan(&status, &ready); err != nil {
		return reporter.Applied{}, err
	}
	seq := int64(env.Seq)
	old := reporter.Applied{Status: runstate.Status(status), ReportReady: ready}
	if seq > 0 && seq <= last {
		return old, nil // stored: every sequence up to last_seq is
	}
	isNew, err := insertEvent(ctx, tx, env)
	if err != nil {
		return reporter.Applied{}, err
	}
	if seq == last+1 {
		if _, err := tx.Exec(ctx, `UPDATE projection_state SET last_seq = $1`, seq); err != nil {
			return reporter.Applied{}, err
		}
	}
	if !isNew {
		return old, nil
	}
	if noise(ev.GetType()) {
		// The fold ignores them: only a run's start may move.
		_, err := tx.Exec(ctx, `UPDATE runs SET started = $2 WHERE run_id = $1 AND NOT has_cr AND (started IS NULL OR started > $2)`, runID, ev.GetTime().AsTime())
		old.New = true
		return old, err
	}
	return refold(ctx, tx, runID)
}

// insertEvent stores one event unless its id is stored; a known sequence is
// recorded on an event stored without one.
func insertEvent(ctx context.Context, tx pgx.Tx, env eventbus.Envelope) (bool, error) {
	ev := env.Event
	var seq any
	if env.Seq > 0 {
		seq = int64(env.Seq)
	}
	payload, err := marshal.Marshal(ev)
	if err != nil {
		return false, err
	}
	tag, err := tx.Exec(ctx, `INSERT INTO events (event_id, stream_seq, run_id, type, subject, time, actor, kept, payload)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_id) DO NOTHING`,
		ev.GetId(), seq, ev.GetRunId(), ev.GetType(), env.Subject, ev.GetTime().AsTime(), ev.GetActor(), !noise(ev.GetType()), string(payload))
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() == 0 {
		if seq != nil {
			_, err = tx.Exec(ctx, `UPDATE events SET stream_seq = $2 WHERE event_id = $1 AND stream_seq IS NULL`, ev.GetId(), seq)
		}
		return false, err
	}
	switch p := ev.Payload.(type) {
	case *runbookv1.Event_ReportReady:
		r := p.ReportReady
		var js any
		if js0 := r.GetReportJson(); js0 != "" && json.Valid([]byte(js0)) {
			js = js0
		}
		_, err = tx.Exec(ctx, `INSERT INTO reports (run_id, event_id, status, report_json, report, qc_summary) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (run_id) DO NOTHING`, ev.GetRunId(), ev.GetId(), r.GetStatus(), r.GetReportJson(), js, r.GetQcSummary())
	case *runbookv1.Event_ApprovalGranted:
		err = insertApproval(ctx, tx, ev, p.ApprovalGranted, "granted")
	case *runbookv1.Event_ApprovalRejected:
		err = insertApproval(ctx, tx, ev, p.ApprovalRejected, "rejected")
	case *runbookv1.Event_ApprovalRefused:
		err = insertApproval(ctx, tx, ev, p.ApprovalRefused, "refused")
	}
	return true, err
}

func insertApproval(ctx context.Context, tx pgx.Tx, ev *runbookv1.Event, a *runbookv1.Approval, decision string) error {
	_, err := tx.Exec(ctx, `INSERT INTO approvals (event_id, run_id, role, approver, decision, time) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (event_id) DO NOTHING`, ev.GetId(), ev.GetRunId(), a.GetRole(), a.GetApprover(), decision, ev.GetTime().AsTime())
	return err
}

// loadEvents is a run's kept events (not deploy.step.output nor
// test.load.progress, which the fold ignores) in the model's order.
func loadEvents(ctx context.Context, q pgx.Tx, runID string) ([]eventbus.Envelope, error) {
	rows, err := q.Query(ctx, `SELECT stream_seq, subject, payload::text FROM events WHERE run_id = $1 AND kept ORDER BY ord`, runID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var envs []eventbus.Envelope
	for rows.Next() {
		var seq *int64
		var subject, payload string
		if err := rows.Scan(&seq, &subject, &payload); err != nil {
			return nil, err
		}
		ev := &runbookv1.Event{}
		if err := protojson.Unmarshal([]byte(payload), ev); err != nil {
			return nil, fmt.Errorf("event of run %s: %w", runID, err)
		}
		env := eventbus.Envelope{Event: ev, Subject: subject}
		if seq != nil {
			env.Seq = uint64(*seq)
		}
		envs = append(envs, env)
	}
	return envs, rows.Err()
}

// refold folds the run's stored events and writes its row.
func refold(ctx context.Context, tx pgx.Tx, runID string) (reporter.Applied, error) {
	envs, err := loadEvents(ctx, tx, runID)
	if err != nil {
		return reporter.Applied{}, err
	}
	st := runstate.New(runID)
	var started, ended time.Time
	hasCR := false
	risk := ""
	for _, env := range envs {
		ev := env.Event
		t := ev.GetTime().AsTime()
		switch p := ev.Payload.(type) {
		case *runbookv1.Event_ChangeRequested:
			started, hasCR = t, true
		case *runbookv1.Event_PlanAssessed:
			risk = p.PlanAssessed.GetLevel()
		}
		if !hasCR && (started.IsZero() || t.Before(started)) {
			started = t
		}
		wasFinal := st.Status.Final()
		st.Apply(ev)
		if !wasFinal && st.Status.Final() {
			ended = t
		}
	}
	_, err = tx.Exec(ctx, `UPDATE runs SET status = $2, change_id = $3, title = $4, requester = $5, risk_level = $6,
		started = CASE WHEN $8 THEN $7 ELSE (SELECT min(time) FROM events WHERE run_id = $1) END, has_cr = $8, ended = $9, report_ready = $10, final = $11 WHERE run_id = $1`,
		runID, string(st.Status), st.ChangeID, st.Title, st.Requester, risk, nullTime(started), hasCR, nullTime(ended), st.ReportReady, st.Status.Final())
	if err != nil {
		return reporter.Applied{}, err
	}
	return reporter.Applied{New: true, Status: st.Status, ReportReady: st.ReportReady}, nil
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// Reconcile implements reporter.ReadModel: the history's events (sequences
// known) come first in stream order, then the events it does not have yet,
// in their previous order.
func (s *Store) Reconcile(ctx context.Context, runID string, history []eventbus.Envelope) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO runs (run_id, status) VALUES ($1, $2) ON CONFLICT (run_id) DO NOTHING`, runID, string(runstate.New(runID).Status)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM runs WHERE run_id = $1 FOR UPDATE`, runID); err != nil {
			return err
		}
		ids := make([]string, 0, len(history))
		for _, env := range history {
			if _, err := insertEvent(ctx, tx, env); err != nil {
				return err
			}
			ids = append(ids, env.Event.GetId())
		}
		rows, err := tx.Query(ctx, `SELECT event_id FROM events WHERE run_id = $1 ORDER BY ord`, runID)
		if err != nil {
			return err
		}
		var rest []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			if !slices.Contains(ids, id) {
				rest = append(rest, id)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		order := append(ids, rest...)
		// New positions -len..-1 in the new order: below every position
		// the sequence hands out later, so later arrivals still come after.
		if _, err := tx.Exec(ctx, `UPDATE events e SET ord = o.n - $2 - 1 FROM
			unnest($1::text[]) WITH ORDINALITY AS o(id, n) WHERE e.event_id = o.id`, order, len(order)); err != nil {
			return err
		}
		_, err = refold(ctx, tx, runID)
		return err
	})
	if err != nil {
		return fmt.Errorf("reconcile run %s: %w", runID, err)
	}
	return nil
}

// Run implements reporter.ReadModel.
func (s *Store) Run(ctx context.Context, runID string) (*reporter.Run, error) {
	var out *reporter.Run
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, runSelect+` WHERE run_id = $1`, runID)
		if err != nil {
			return err
		}
		sums, err := scanSummaries(rows)
		if err != nil || len(sums) == 0 {
			return err
		}
		envs, err := loadEvents(ctx, tx, runID)
		if err != nil {
			return err
		}
		run := &reporter.Run{RunSummary: sums[0], State: runstate.New(runID)}
		for _, env := range envs {
			run.Events = append(run.Events, env)
			run.State.Apply(env.Event)
			if r := env.Event.GetReportReady(); r != nil {
				run.Report = r
			}
		}
		out = run
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read run %s: %w", runID, err)
	}
	return out, nil
}

const runSelect = `SELECT run_id, change_id, title, status, started, ended FROM runs`

func scanSummaries(rows pgx.Rows) ([]reporter.RunSummary, error) {
	defer rows.Close()
	out := []reporter.RunSummary{}
	for rows.Next() {
		var r reporter.RunSummary
		var status string
		var started, ended *time.Time
		if err := rows.Scan(&r.RunID, &r.ChangeID, &r.Title, &status, &started, &ended); err != nil {
			return nil, err
		}
		r.Status = runstate.Status(status)
		if started != nil {
			r.Started = started.UTC()
		}
		if ended != nil {
			r.Ended = ended.UTC()
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Runs implements reporter.ReadModel.
func (s *Store) Runs(ctx context.Context) ([]reporter.RunSummary, error) {
	rows, err := s.pool.Query(ctx, runSelect+` ORDER BY started DESC NULLS LAST, run_id`)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	out, err := scanSummaries(rows)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return out, nil
}

// Unreported implements reporter.ReadModel.
func (s *Store) Unreported(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT run_id FROM runs WHERE final AND NOT report_ready ORDER BY run_id`)
	if err != nil {
		return nil, fmt.Errorf("list unreported runs: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list unreported runs: %w", err)
	}
	return ids, nil
}

// LastSeq is the projection's position: every stream sequence up to it is stored.
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `SELECT last_seq FROM projection_state`).Scan(&n)
	return uint64(n), err
}
