package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kis-core/runbook/services/reporter"
)

// The projection's write lease (reporter.Leaser): of the reporters that
// share one database, one projects and reports, the others stand by.
//
//   - Who holds it is a session-level advisory lock (leaseLock) on a
//     connection of its own. A holder that exits or crashes closes that
//     connection and PostgreSQL releases the lock at once; one that is
//     frozen (SIGSTOP, a long pause) or cut off from the database stops
//     sending the heartbeat, and the session's idle_session_timeout (the
//     lease timeout) makes PostgreSQL end the session, and the lock with
//     it. Standbys try the lock every leasePoll.
//   - What fences the writes is projection_state.lease_token, in the row
//     every batch locks: the new holder adds one to it (waiting for a batch
//     in flight to end), and a batch commits only while the token is its
//     writer's. So a writer that lost the lease without knowing it (paused
//     between reading the stream and committing, its lock connection gone)
//     cannot commit once the new holder has taken over. A batch of a leased
//     writer also runs under idle_in_transaction_session_timeout and
//     statement_timeout of the lease timeout: a writer frozen inside its
//     transaction holds the row lock, and with it the takeover, no longer.

// leaseLock is the advisory lock key of the write lease (migrationLock is
// the migrations').
const leaseLock = migrationLock + 1

// leasePoll is how often a standby tries the lock: a tenth of the timeout,
// between 50 ms and 1 s (a holder that exits is replaced that fast).
func leasePoll(timeout time.Duration) time.Duration {
	return min(max(timeout/10, 50*time.Millisecond), time.Second)
}

// fence is what ApplyBatch checks: the token of the last lease this store
// took (0: it never took one and writes unfenced, as `runbook replay
// --rebuild` does), and the lease timeout. It outlives the lease: a store
// whose lease ended (lost, or released) still commits while no one has
// taken the lease since — no one else writes then — and never after.
type fence struct {
	token   int64
	timeout time.Duration
}

// lease is a held write lease.
type lease struct {
	store   *Store
	conn    *pgx.Conn // owned by heartbeat once the lease is held
	token   int64
	timeout time.Duration

	stop     chan struct{} // closed by Release
	stopOnce sync.Once
	exited   chan struct{} // closed when heartbeat returned (conn closed)
	done     chan struct{}
	doneOnce sync.Once
	mu       sync.Mutex
	err      error
}

var _ reporter.Leaser = (*Store)(nil)

// AcquireLease implements reporter.Leaser.
func (s *Store) AcquireLease(ctx context.Context, holder string, timeout time.Duration, standby func(string)) (reporter.Lease, error) {
	if timeout <= 0 {
		return nil, errors.New("pgstore: the lease timeout must be positive")
	}
	s.leaseMu.Lock()
	busy := s.lease != nil && s.lease.Err() == nil
	s.leaseMu.Unlock()
	if busy {
		return nil, errors.New("pgstore: this store already holds the write lease (one store per reporter)")
	}
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("write lease: %w", err)
	}
	conn := pc.Hijack() // the session holds the lock: never back to the pool
	fail := func(what string, err error) (reporter.Lease, error) {
		_ = conn.Close(context.WithoutCancel(ctx))
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("write lease: %s: %w", what, err)
	}
	ms := strconv.FormatInt(timeout.Milliseconds(), 10)
	if _, err := conn.Exec(ctx, `SELECT set_config('idle_session_timeout', $1, false)`, ms); err != nil {
		return fail("set idle_session_timeout (PostgreSQL 14 or later)", err)
	}
	seen := "\x00"
	for {
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(leaseLock)).Scan(&got); err != nil {
			return fail("try the lock", err)
		}
		if got {
			break
		}
		if standby != nil {
			var cur string
			if err := conn.QueryRow(ctx, `SELECT lease_holder FROM projection_state`).Scan(&cur); err == nil && cur != seen {
				seen = cur
				standby(cur)
			}
		}
		select {
		case <-ctx.Done():
			return fail("", ctx.Err())
		case <-time.After(leasePoll(timeout)):
		}
	}
	// The fence: from this commit on, no earlier holder's batch commits.
	// It waits for a batch in flight (its row lock) to commit or end.
	var token int64
	if err := conn.QueryRow(ctx, `UPDATE projection_state SET lease_token = lease_token + 1, lease_holder = $1, lease_since = now() RETURNING lease_token`, holder).Scan(&token); err != nil {
		return fail("take the token", err)
	}
	l := &lease{store: s, conn: conn, token: token, timeout: timeout,
		stop: make(chan struct{}), exited: make(chan struct{}), done: make(chan struct{})}
	s.leaseMu.Lock()
	s.lease, s.fence = l, fence{token: token, timeout: timeout}
	s.leaseMu.Unlock()
	go l.heartbeat()
	return l, nil
}

// fenceState is the fence ApplyBatch checks.
func (s *Store) fenceState() fence {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	return s.fence
}

func (l *lease) Token() int64          { return l.token }
func (l *lease) Done() <-chan struct{} { return l.done }

func (l *lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Release implements reporter.Lease: the store writes nothing more, and
// closing the lock's connection releases the lock.
func (l *lease) Release(ctx context.Context) {
	l.end(context.Canceled)
	l.stopOnce.Do(func() { close(l.stop) })
	select {
	case <-l.exited:
	case <-ctx.Done():
	}
}

// end ends the lease with err and closes Done.
func (l *lease) end(err error) {
	l.doneOnce.Do(func() {
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
		close(l.done)
	})
}

// heartbeat keeps the lock's session busy enough for idle_session_timeout
// (every third of the timeout) and checks the token is still this lease's,
// until Release or a failure, which ends the lease as lost. It closes the
// connection when it returns.
func (l *lease) heartbeat() {
	defer close(l.exited)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = l.conn.Close(ctx)
	}()
	t := time.NewTicker(l.timeout / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		if l.store.heartbeatPaused.Load() {
			continue // a frozen process, for tests
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.timeout/3)
		var token int64
		err := l.conn.QueryRow(ctx, `SELECT lease_token FROM projection_state`).Scan(&token)
		cancel()
		switch {
		case err != nil:
			l.end(fmt.Errorf("%w: its connection to PostgreSQL failed: %w", reporter.ErrLeaseLost, err))
			return
		case token != l.token:
			l.end(fmt.Errorf("%w: the lease's token is %d, this reporter's %d", reporter.ErrLeaseLost, token, l.token))
			return
		}
	}
}
