package pgstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/pgstore"
	"github.com/kis-core/runbook/services/reporter/pgstore/pgtest"
)

// publishRunLife publishes one run from change.requested to its end:
// odd runs are rejected (INVALID), even ones deploy with outputs lines
// of output and roll back (ROLLED_BACK).
func publishRunLife(t testing.TB, bus *eventbus.Bus, run string, i, outputs int) {
	pub := func(p any, parts ...any) {
		if _, err := bus.Publish(context.Background(), eventbus.New(run, p, parts...)); err != nil {
			t.Error(err)
		}
	}
	pub(&runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{ChangeId: "CR-" + run, Title: "run " + run}})
	if i%2 == 1 {
		pub(&runbookv1.Event_ChangeRejected{ChangeRejected: &runbookv1.ChangeRejected{}})
		return
	}
	pub(&runbookv1.Event_PreflightStarted{PreflightStarted: &runbookv1.PreflightStarted{}})
	pub(&runbookv1.Event_PlanAssessed{PlanAssessed: &runbookv1.PlanAssessed{Level: "LOW"}})
	pub(&runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{}})
	for j := range outputs {
		pub(&runbookv1.Event_DeployStepOutput{DeployStepOutput: &runbookv1.StepOutput{Text: fmt.Sprint("line ", j)}}, j)
	}
	pub(&runbookv1.Event_DeployDone{DeployDone: &runbookv1.DeployFinished{}})
	pub(&runbookv1.Event_RollbackStarted{RollbackStarted: &runbookv1.RollbackStarted{Reason: "p95 over limit"}})
	pub(&runbookv1.Event_RollbackDone{RollbackDone: &runbookv1.DeployFinished{}})
}

// replica is one reporter process: its own NATS connection and its own
// pool on the shared database (application_name is its name).
type replica struct {
	name   string
	model  reporter.ReadModel
	store  *pgstore.Store
	svc    *reporter.Service
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// startReplica starts a reporter on url. wrap, if not nil, wraps its
// store (a model that pauses).
func startReplica(t *testing.T, srv *server.Server, url, name string, wrap func(*pgstore.Store) reporter.ReadModel) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	store, err := pgstore.Open(ctx, url+"&application_name="+name)
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{name: name, store: store, model: store, cancel: cancel, done: make(chan struct{})}
	if wrap != nil {
		r.model = wrap(store)
	}
	o := reporter.Options{Model: r.model, Instance: name, Batch: 10, LeaseTimeout: leaseTimeout,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, TestsGrace: -1, StreamCheck: 100 * time.Millisecond}
	log := slog.New(slog.NewTextHandler(testWriter{t, name}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r.svc = reporter.New(natstest.Bus(t, srv, "reporter/"+name), o, log, nil, nil)
	go func() {
		defer close(r.done)
		r.err = r.svc.Run(ctx)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends the replica (it releases its lease) and waits for it.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		t.Errorf("replica %s did not stop", r.name)
		return
	}
	if r.err != nil {
		t.Errorf("replica %s: %v", r.name, r.err)
	}
	r.store.Close()
}

type testWriter struct {
	t    testing.TB
	name string
}

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s: %s", w.name, bytes.TrimSpace(p))
	return len(p), nil
}

// leader waits until exactly one of rs leads and the database names it as
// the lease's holder, and returns it. (For a moment after its connection
// was killed, a leader may still believe it leads while another has taken
// over: the fence, not its belief, keeps it from writing.)
func leader(t *testing.T, url string, rs ...*replica) *replica {
	t.Helper()
	var l *replica
	natstest.Eventually(t, 15*time.Second, "one leader", func() bool {
		var leading []*replica
		for _, r := range rs {
			if r.svc.Leading() {
				leading = append(leading, r)
			}
		}
		if len(leading) != 1 {
			return false
		}
		l = leading[0]
		return holder(t, url) == l.name
	})
	return l
}

// holder is the write lease's holder as the database names it.
func holder(t *testing.T, url string) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var h string
	if err := conn.QueryRow(context.Background(), `SELECT lease_holder FROM projection_state`).Scan(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

// token is the write lease's fencing token.
func token(t *testing.T, url string) int64 {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(context.Background(), `SELECT lease_token FROM projection_state`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// position is the projection's position.
func position(t *testing.T, url string) uint64 {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(context.Background(), `SELECT last_seq FROM projection_state`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return uint64(n)
}

// killConns ends every PostgreSQL session of the replica (its lease's and
// its pool's), as its host's crash or a cut network would.
func killConns(t *testing.T, url string, r *replica) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, r.name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkReplicated waits until every run has its report.ready and the
// projection has caught up with the stream, then asserts: Verify finds no
// mismatch (rows, chain, position), each run has exactly one report.ready
// in the stream and its report row.
func checkReplicated(t *testing.T, admin *eventbus.Bus, url string, runs []string) {
	t.Helper()
	ctx := context.Background()
	store, err := pgstore.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	reports := func() map[string]int {
		n := map[string]int{}
		err := admin.Scan(ctx, []string{eventbus.SubjectPrefix + ".*.report.ready"}, 0, func(e eventbus.Envelope) error {
			n[e.Event.GetRunId()]++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	natstest.Eventually(t, 60*time.Second, "every run reported and projected", func() bool {
		if len(reports()) < len(runs) {
			return false
		}
		last, err := admin.LastSeq(ctx)
		if err != nil {
			return false
		}
		pos, err := store.Position(ctx)
		return err == nil && pos == last
	})
	for run, n := range reports() {
		if n != 1 {
			t.Errorf("run %s has %d report.ready", run, n)
		}
	}
	ms, st, err := store.Verify(ctx, func(fn func(eventbus.Envelope) error) error {
		return admin.Scan(ctx, []string{eventbus.SubjectPrefix + ".>"}, 0, fn)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		t.Errorf("verify: %s", m)
	}
	if st.Runs != len(runs) || st.Reports != len(runs) {
		t.Errorf("verify checked %d runs and %d reports, want %d of each", st.Runs, st.Reports, len(runs))
	}
	var unreported int
	if err := store.Pool().QueryRow(ctx, `SELECT count(*) FROM runs WHERE NOT final OR NOT report_ready`).Scan(&unreported); err != nil {
		t.Fatal(err)
	}
	if unreported != 0 {
		t.Errorf("%d runs not final or not reported in the database", unreported)
	}
	t.Logf("%d events, %d runs, %d reports verified", st.Events, st.Runs, st.Reports)
}

// publishRuns publishes n runs from as many goroutines (their events
// interleave in the stream) and returns their ids.
func publishRuns(t *testing.T, bus *eventbus.Bus, prefix string, n, outputs int) []string {
	var wg sync.WaitGroup
	runs := make([]string, n)
	for i := range n {
		runs[i] = fmt.Sprintf("%s%03d", prefix, i)
		wg.Go(func() { publishRunLife(t, bus, runs[i], i, outputs) })
	}
	wg.Wait()
	return runs
}

// Three reporters on one database and one stream, all running while 40
// runs are published: one leads (the lease's holder), the others stand
// by; every event is projected once with the rows the stream gives, every
// chain is intact, every run has one report.ready.
func TestReplicasShareOneDatabase(t *testing.T) {
	url := pgtest.URL(t)
	srv := natstest.Server(t)
	admin := natstest.Bus(t, srv, "admin")
	var rs []*replica
	for i := range 3 {
		rs = append(rs, startReplica(t, srv, url, fmt.Sprint("r", i), nil))
	}
	runs := publishRuns(t, admin, "A", 40, 5)
	checkReplicated(t, admin, url, runs)
	leader(t, url, rs...)
}

// The leader goes away in the middle of the stream — stopped (it releases
// the lease), or every connection it has to PostgreSQL killed (a crash, a
// cut network: the process lives on and finds out) — while runs are
// being published: a standby takes over from the stored position, and the
// end is the same as without: every event once, intact chains, one
// report.ready per run.
func TestReplicasTakeOver(t *testing.T) {
	for _, how := range []string{"stopped", "connections killed"} {
		t.Run(how, func(t *testing.T) {
			url := pgtest.URL(t)
			srv := natstest.Server(t)
			admin := natstest.Bus(t, srv, "admin")
			var rs []*replica
			for i := range 3 {
				rs = append(rs, startReplica(t, srv, url, fmt.Sprint("r", i), nil))
			}
			first := leader(t, url, rs...)
			published := make(chan []string, 1)
			go func() { published <- publishRuns(t, admin, "A", 60, 10) }()
			natstest.Eventually(t, 30*time.Second, "the leader in the middle of the stream", func() bool { return position(t, url) >= 100 })
			switch how {
			case "stopped":
				first.stop(t)
				t.Logf("%s stopped at position %d", first.name, position(t, url))
			default:
				n := killConns(t, url, first)
				t.Logf("%d connections of %s killed at position %d", n, first.name, position(t, url))
			}
			// Stopped, it is gone; killed, it lives on and may take the
			// lease again: either way under a new token.
			candidates := rs
			if how == "stopped" {
				candidates = slices.DeleteFunc(slices.Clone(rs), func(r *replica) bool { return r == first })
			}
			natstest.Eventually(t, 15*time.Second, "a new lease", func() bool { return token(t, url) > 1 })
			next := leader(t, url, candidates...)
			t.Logf("%s leads, token %d", next.name, token(t, url))
			runs := <-published
			if last, _ := admin.LastSeq(context.Background()); position(t, url) >= last {
				t.Logf("the stream was projected before the takeover")
			}
			checkReplicated(t, admin, url, runs)
		})
	}
}

// frozen is a read model whose ApplyBatch can be frozen: the reporter has
// read a batch from the stream and stops before storing it, its lease's
// heartbeat stopped too (a SIGSTOPped process). When it thaws, the batch
// goes to the store as it was, its context not ended: only the fence can
// stop it.
type frozen struct {
	*pgstore.Store
	mu     sync.Mutex
	freeze bool
	in     chan struct{} // closed when a batch is frozen
	thaw   chan struct{}
	errs   chan error // what the frozen batch got
}

func (f *frozen) ApplyBatch(ctx context.Context, expected uint64, envs []eventbus.Envelope) error {
	f.mu.Lock()
	freeze := f.freeze
	f.freeze = false
	f.mu.Unlock()
	if !freeze {
		return f.Store.ApplyBatch(ctx, expected, envs)
	}
	f.Store.PauseHeartbeatForTest(true)
	close(f.in)
	<-f.thaw
	err := f.Store.ApplyBatch(context.WithoutCancel(ctx), expected, envs)
	f.errs <- err
	return err
}

// The leader freezes between reading a batch and storing it (its lease's
// heartbeat too): PostgreSQL ends its lease's session after the lease
// timeout, a standby takes over, projects the stream and reports every
// run. When the frozen leader thaws, its batch is refused (ErrLeaseLost)
// and it stands by: nothing it read is stored by it, the database is the
// stream's, one report.ready per run.
func TestReplicasFrozenLeaderCannotCommit(t *testing.T) {
	url := pgtest.URL(t)
	srv := natstest.Server(t)
	admin := natstest.Bus(t, srv, "admin")
	f := &frozen{in: make(chan struct{}), thaw: make(chan struct{}), errs: make(chan error, 1)}
	a := startReplica(t, srv, url, "a", func(s *pgstore.Store) reporter.ReadModel { f.Store = s; return f })
	leader(t, url, a)
	b := startReplica(t, srv, url, "b", nil)
	runs := publishRuns(t, admin, "A", 5, 3)
	natstest.Eventually(t, 15*time.Second, "a projects", func() bool { return position(t, url) > 0 })
	f.mu.Lock()
	f.freeze = true
	f.mu.Unlock()
	runs = append(runs, publishRuns(t, admin, "B", 20, 3)...)
	wait(t, f.in, 15*time.Second, "a frozen with a batch")
	frozenAt := position(t, url)
	leader(t, url, b)
	checkReplicated(t, admin, url, runs)
	if position(t, url) <= frozenAt {
		t.Fatalf("b did not project past %d", frozenAt)
	}
	close(f.thaw)
	if err := wait(t, f.errs, 15*time.Second, "a's batch"); !errors.Is(err, reporter.ErrLeaseLost) {
		t.Fatalf("the frozen leader's batch after the takeover: %v, want ErrLeaseLost", err)
	}
	f.Store.PauseHeartbeatForTest(false)
	natstest.Eventually(t, 10*time.Second, "a standing by", func() bool { return !a.svc.Leading() })
	if h := holder(t, url); h != "b" {
		t.Errorf("lease holder %q, want b", h)
	}
	checkReplicated(t, admin, url, runs)
}
