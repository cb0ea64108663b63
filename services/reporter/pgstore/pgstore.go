// Package pgstore is the reporter's ReadModel on PostgreSQL: runs, events,
// reports, approvals and the projection's stream position, so the history
// of every run outlives the reporter and can be queried with SQL.
//
// The projector hands it events in stream order. ApplyBatch locks
// projection_state, skips what is at or below last_seq, COPYs the rest into
// events, upserts the touched runs (their fold, summary and hash-chain
// head) and moves last_seq, all in one transaction: a crash or a second
// writer never stores an event twice and never skips one. The folds of
// recently touched runs are cached between batches while this store is the
// only writer (last_seq is where it left it); otherwise they are reloaded
// from the events table.
//
// Several reporters share one database through the write lease
// (AcquireLease, lease.go): one projects, the others stand by, and a batch
// commits only while its writer's lease is the current one.
package pgstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

	// mu serialises ApplyBatch in this process and guards the cache.
	mu sync.Mutex
	// cache holds the folds of runs as of position cachePos.
	cache    map[string]*runFold
	cachePos int64

	// leaseMu guards lease and fence (see lease.go).
	leaseMu sync.Mutex
	lease   *lease
	fence   fence

	// Test hooks: beforeCommit runs inside ApplyBatch's transaction after
	// its writes; heartbeatPaused stops the lease's heartbeat.
	beforeCommit    func()
	heartbeatPaused atomic.Bool
}

// maxCachedRuns bounds the fold cache: past it, the folds of final runs
// are dropped (reloaded from the events table if such a run gets another
// event), so memory stays flat over a long rebuild.
const maxCachedRuns = 20000

// runFold is a run's fold plus the head of its hash chain.
type runFold struct {
	*reporter.Fold
	chain []byte
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
	return &Store{pool: pool, cache: map[string]*runFold{}, cachePos: -1}, nil
}

// Close releases the write lease, if the store holds one, and closes the
// connection pool.
func (s *Store) Close() {
	s.leaseMu.Lock()
	l := s.lease
	s.leaseMu.Unlock()
	if l != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		l.Release(ctx)
		cancel()
	}
	s.pool.Close()
}

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

var marshal = protojson.MarshalOptions{}

// Position implements reporter.ReadModel.
func (s *Store) Position(ctx context.Context) (uint64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT last_seq FROM projection_state`).Scan(&n); err != nil {
		return 0, fmt.Errorf("projection position: %w", err)
	}
	return uint64(n), nil
}

// Head implements reporter.ReadModel: the position and the id of the event
// stored at it, in one statement.
func (s *Store) Head(ctx context.Context) (uint64, string, error) {
	var n int64
	var id string
	err := s.pool.QueryRow(ctx, `SELECT p.last_seq, coalesce(e.event_id, '')
		FROM projection_state p LEFT JOIN events e ON e.stream_seq = p.last_seq`).Scan(&n, &id)
	if err != nil {
		return 0, "", fmt.Errorf("projection head: %w", err)
	}
	return uint64(n), id, nil
}

// ApplyBatch implements reporter.ReadModel.
func (s *Store) ApplyBatch(ctx context.Context, expected uint64, envs []eventbus.Envelope) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fenceState()
	var newPos int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var last, token int64
		var err error
		if f.token == 0 {
			err = tx.QueryRow(ctx, `SELECT last_seq, lease_token FROM projection_state FOR UPDATE`).Scan(&last, &token)
		} else {
			// A writer frozen inside this transaction holds the row lock,
			// and the takeover with it, for the lease timeout at most.
			ms := strconv.FormatInt(f.timeout.Milliseconds(), 10)
			err = tx.QueryRow(ctx, `SELECT last_seq, lease_token,
				set_config('idle_in_transaction_session_timeout', $1, true), set_config('statement_timeout', $1, true)
				FROM projection_state FOR UPDATE`, ms).Scan(&last, &token, nil, nil)
		}
		if err != nil {
			return fmt.Errorf("lock the projection: %w", err)
		}
		if f.token != 0 && token != f.token {
			return fmt.Errorf("%w: the projection's lease token is %d, this writer's %d (another reporter took over)", reporter.ErrLeaseLost, token, f.token)
		}
		if last < int64(expected) {
			return fmt.Errorf("%w: the projection is at sequence %d, the reader at %d (reset, or commits lost)", reporter.ErrBehind, last, expected)
		}
		if s.cachePos != last {
			// Another writer moved the projection (or a batch failed):
			// the cached folds are of an older position. Cleared before
			// anything else, so that even a batch this writer skips whole
			// leaves the cache at last.
			clear(s.cache)
		}
		newPos = last
		i := sort.Search(len(envs), func(i int) bool { return int64(envs[i].Seq) > last })
		envs := envs[i:]
		if len(envs) == 0 {
			return nil
		}
		if err := s.loadFolds(ctx, tx, envs); err != nil {
			return err
		}
		touched := map[string]*runFold{}
		rows := make([][]any, 0, len(envs))
		batch := &pgx.Batch{}
		for _, env := range envs {
			f := s.cache[env.Event.GetRunId()]
			if err := f.apply(env); err != nil {
				return err
			}
			touched[env.Event.GetRunId()] = f
			row, err := newEventRow(env, f.chain)
			if err != nil {
				return err
			}
			rows = append(rows, colValues(row.cols()))
			queueSide(batch, env)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"events"}, eventColumns, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("copy %d events from sequence %d: %w", len(rows), envs[0].Seq, err)
		}
		upsertRuns(batch, touched)
		newPos = int64(envs[len(envs)-1].Seq)
		batch.Queue(`UPDATE projection_state SET last_seq = $1`, newPos)
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("store runs of the batch: %w", err)
		}
		if s.beforeCommit != nil {
			s.beforeCommit()
		}
		return nil
	})
	if err != nil {
		clear(s.cache) // the folds moved past what was committed
		s.cachePos = -1
		return fmt.Errorf("apply events: %w", err)
	}
	s.cachePos = newPos
	if len(s.cache) > maxCachedRuns {
		for id, f := range s.cache {
			if f.State.Status.Final() {
				delete(s.cache, id)
			}
		}
		if len(s.cache) > maxCachedRuns {
			clear(s.cache)
		}
	}
	return nil
}

// loadFolds puts the fold of every run of envs into the cache, refolding
// the stored events of runs it does not hold.
func (s *Store) loadFolds(ctx context.Context, tx pgx.Tx, envs []eventbus.Envelope) error {
	var missing []string
	for _, env := range envs {
		id := env.Event.GetRunId()
		if _, ok := s.cache[id]; !ok {
			s.cache[id] = &runFold{Fold: reporter.NewFold(id)}
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT stream_seq, subject, payload::text, chain FROM events WHERE run_id = ANY($1) ORDER BY stream_seq`, missing)
	if err != nil {
		return fmt.Errorf("load runs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var subject, payload string
		var chain []byte
		if err := rows.Scan(&seq, &subject, &payload, &chain); err != nil {
			return fmt.Errorf("load runs: %w", err)
		}
		ev := &runbookv1.Event{}
		if err := protojson.Unmarshal([]byte(payload), ev); err != nil {
			return fmt.Errorf("load event at sequence %d: %w", seq, err)
		}
		f := s.cache[ev.GetRunId()]
		f.Apply(eventbus.Envelope{Event: ev, Seq: uint64(seq), Subject: subject})
		f.chain = chain
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load runs: %w", err)
	}
	return nil
}

// queueSide queues the rows an event adds besides its own: a report, an approval.
func queueSide(b *pgx.Batch, env eventbus.Envelope) {
	if r, ok := newReportRow(env); ok {
		b.Queue(insertReportSQL, colValues(r.cols())...)
	}
	if a, ok := newApprovalRow(env); ok {
		b.Queue(insertApprovalSQL, colValues(a.cols())...)
	}
}

// upsertRuns writes the row of every touched run that exists in one
// statement (one array per column) and deletes the row of a touched run
// that no longer does (its only events were dead-lettered: Fold.Exists).
func upsertRuns(b *pgx.Batch, touched map[string]*runFold) {
	var gone []string
	for id, f := range touched {
		if !f.Exists() {
			gone = append(gone, id)
		}
	}
	if len(gone) > 0 {
		b.Queue(`DELETE FROM runs WHERE run_id = ANY($1)`, gone)
	}
	if len(gone) == len(touched) {
		return
	}
	var arrays []reflect.Value
	for _, f := range touched {
		if !f.Exists() {
			continue
		}
		row := f.row()
		cs := row.cols()
		if arrays == nil {
			arrays = make([]reflect.Value, len(cs))
			for i, c := range cs {
				arrays[i] = reflect.MakeSlice(reflect.SliceOf(reflect.TypeOf(c.ptr).Elem()), 0, len(touched))
			}
		}
		for i, c := range cs {
			arrays[i] = reflect.Append(arrays[i], reflect.ValueOf(c.ptr).Elem())
		}
	}
	args := make([]any, len(arrays))
	for i, a := range arrays {
		args[i] = a.Interface()
	}
	b.Queue(upsertRunsSQL, args...)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// loadEvents reads events of a run in stream order: kept ones only, or all
// after afterSeq (limit <= 0: no limit).
func loadEvents(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, runID string, keptOnly bool, afterSeq uint64, limit int) ([]eventbus.Envelope, error) {
	sql := `SELECT stream_seq, subject, payload::text FROM events WHERE run_id = $1 AND stream_seq > $2`
	if keptOnly {
		sql += ` AND kept`
	}
	sql += ` ORDER BY stream_seq`
	if limit > 0 {
		sql += fmt.Sprintf(` LIMIT %d`, limit)
	}
	rows, err := q.Query(ctx, sql, runID, int64(afterSeq))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var envs []eventbus.Envelope
	for rows.Next() {
		var seq int64
		var subject, payload string
		if err := rows.Scan(&seq, &subject, &payload); err != nil {
			return nil, err
		}
		ev := &runbookv1.Event{}
		if err := protojson.Unmarshal([]byte(payload), ev); err != nil {
			return nil, fmt.Errorf("event at sequence %d of run %s: %w", seq, runID, err)
		}
		envs = append(envs, eventbus.Envelope{Event: ev, Seq: uint64(seq), Subject: subject})
	}
	return envs, rows.Err()
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
		envs, err := loadEvents(ctx, tx, runID, true, 0, 0)
		if err != nil {
			return err
		}
		run := &reporter.Run{RunSummary: sums[0], State: runstate.New(runID), Events: envs}
		for _, env := range envs {
			run.State.ApplyAt(env.Seq, env.Event)
			if r := env.Event.GetReportReady(); r != nil && run.Report == nil {
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

// Events implements reporter.ReadModel.
func (s *Store) Events(ctx context.Context, runID string, afterSeq uint64, limit int) ([]eventbus.Envelope, error) {
	envs, err := loadEvents(ctx, s.pool, runID, false, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read events of run %s: %w", runID, err)
	}
	return envs, nil
}

const runSelect = `SELECT run_id, change_id, title, requester, risk_level, status, phase, started, ended, events, last_seq, report_ready FROM runs`

func scanSummaries(rows pgx.Rows) ([]reporter.RunSummary, error) {
	defer rows.Close()
	out := []reporter.RunSummary{}
	for rows.Next() {
		var r reporter.RunSummary
		var status string
		var started, ended *time.Time
		var last int64
		if err := rows.Scan(&r.RunID, &r.ChangeID, &r.Title, &r.Requester, &r.RiskLevel, &status, &r.Phase, &started, &ended, &r.Events, &last, &r.Reported); err != nil {
			return nil, err
		}
		r.Status = runstate.Status(status)
		r.LastSeq = uint64(last)
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
func (s *Store) Runs(ctx context.Context, f reporter.RunFilter) ([]reporter.RunSummary, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.Status != "" {
		where = append(where, "status = "+arg(string(f.Status)))
	}
	if f.ChangeID != "" {
		where = append(where, "change_id = "+arg(f.ChangeID))
	}
	if !f.Since.IsZero() {
		where = append(where, "started >= "+arg(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, "started < "+arg(f.Until))
	}
	sql := runSelect
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += ` ORDER BY started DESC NULLS LAST, run_id`
	if f.Limit > 0 {
		sql += " LIMIT " + arg(f.Limit)
	}
	if f.Offset > 0 {
		sql += " OFFSET " + arg(f.Offset)
	}
	rows, err := s.pool.Query(ctx, sql, args...)
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

// DeadLetters implements reporter.ReadModel.
func (s *Store) DeadLetters(ctx context.Context, limit int) ([]eventbus.Envelope, error) {
	sql := `SELECT stream_seq, subject, payload::text FROM events WHERE type = 'event.dead_lettered' ORDER BY stream_seq DESC`
	if limit > 0 {
		sql += fmt.Sprintf(` LIMIT %d`, limit)
	}
	rows, err := s.pool.Query(ctx, sql)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	defer rows.Close()
	out := []eventbus.Envelope{}
	for rows.Next() {
		var seq int64
		var subject, payload string
		if err := rows.Scan(&seq, &subject, &payload); err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
		ev := &runbookv1.Event{}
		if err := protojson.Unmarshal([]byte(payload), ev); err != nil {
			return nil, fmt.Errorf("dead letter at sequence %d: %w", seq, err)
		}
		out = append(out, eventbus.Envelope{Event: ev, Seq: uint64(seq), Subject: subject})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// Reset empties the projection (runs, events, reports, approvals) and sets
// its position to 0, in one transaction: the next projector re-projects the
// whole stream (`runbook replay --rebuild`).
func (s *Store) Reset(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT last_seq FROM projection_state FOR UPDATE`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `TRUNCATE runs, events, reports, approvals`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE projection_state SET last_seq = 0`)
		return err
	})
	clear(s.cache)
	s.cachePos = -1
	if err != nil {
		return fmt.Errorf("reset the projection: %w", err)
	}
	return nil
}
