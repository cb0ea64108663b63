package allinone_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter/pgstore/pgtest"
)

// pgCluster restarts the machine's PostgreSQL (Debian's pg_ctlcluster).
type pgCluster struct{ version string }

func machinePostgres(t *testing.T) *pgCluster {
	t.Helper()
	if _, err := exec.LookPath("pg_ctlcluster"); err != nil {
		missing(t, "pg_ctlcluster not found: this test restarts the machine's PostgreSQL")
	}
	if os.Geteuid() != 0 {
		missing(t, "restarting the machine's PostgreSQL needs root")
	}
	vs, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(vs) == 0 {
		missing(t, "no cluster under /etc/postgresql: %v", err)
	}
	return &pgCluster{version: vs[0].Name()}
}

func (c *pgCluster) ctl(t *testing.T, action string, extra ...string) {
	t.Helper()
	args := append([]string{"--skip-systemctl-redirect", c.version, "main", action}, extra...)
	out, err := exec.Command("pg_ctlcluster", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_ctlcluster %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func startReporter(t *testing.T, bin, natsURL, creds, dbURL string, n int) *proc {
	t.Helper()
	return startProc(t, bin, filepath.Join(filepath.Dir(bin), fmt.Sprintf("reporter-%d.log", n)),
		"--nats-url", natsURL, "--database-url", dbURL, "--metrics-listen", "127.0.0.1:0", "--creds", creds)
}

// 20 runs while the reporter (its own process, PostgreSQL read model) is
// killed with SIGKILL twice and the machine's PostgreSQL is stopped and
// started once: afterwards every stream event is in PostgreSQL exactly
// once, every run has exactly one report, and `runbook audit verify`
// passes. It restarts the machine's PostgreSQL, so `make test` runs it on
// its own after the other packages (RUNBOOK_PG_RESTART=1).
func TestReporterKilledAndPostgresRestarted(t *testing.T) {
	if os.Getenv("RUNBOOK_PG_RESTART") != "1" {
		t.Skip("SKIPPED here: restarts the machine's PostgreSQL; `make test` runs it alone with RUNBOOK_PG_RESTART=1")
	}
	pg := machinePostgres(t)
	dbURL := pgtest.URL(t)
	bin := buildService(t, "reporter")
	p := startPipeline(t, func(o *allinone.Options) { o.Without = []string{"reporter"} })
	url := p.srv.NATSURL()
	ctx := context.Background()

	var runs []string
	submit := func(n int) {
		for range n {
			runs = append(runs, p.submit(t, []byte(trivialPlan)))
		}
	}
	final := func(run string) bool {
		h, err := p.bus.RunHistory(ctx, run)
		if err != nil {
			return false
		}
		// The trivial plan's run is over once the monitor and the tester are done.
		return countType(eventsOf(h), "monitor.completed") == 1 && countType(eventsOf(h), "test.passed")+countType(eventsOf(h), "test.failed") == 1
	}
	reported := func() int {
		n := 0
		for _, r := range runs {
			if e, err := p.bus.LastEvent(ctx, r, "report.ready"); err == nil && e != nil {
				n++
			}
		}
		return n
	}
	logs := func(procs ...*proc) {
		for _, pr := range procs {
			b, _ := os.ReadFile(pr.log.Name())
			t.Logf("%s:\n%s", filepath.Base(pr.log.Name()), b)
		}
	}

	r1 := startReporter(t, bin, url, p.srv.Creds("reporter"), dbURL, 1)
	submit(5)
	natstest.Eventually(t, 60*time.Second, "two runs reported by the first reporter", func() bool { return reported() >= 2 })
	r1.kill() // 1st SIGKILL, runs in flight
	submit(5)
	r2 := startReporter(t, bin, url, p.srv.Creds("reporter"), dbURL, 2)
	natstest.Eventually(t, 60*time.Second, "ten runs reported", func() bool { return reported() == 10 })

	pg.ctl(t, "stop", "-m", "fast")
	pgStarted := false
	t.Cleanup(func() {
		if !pgStarted {
			pg.ctl(t, "start")
		}
	})
	submit(5)
	// The runs go on without PostgreSQL; the reporter stores nothing and
	// reports nothing meanwhile.
	natstest.Eventually(t, 60*time.Second, "the runs submitted while PostgreSQL is down to finish", func() bool {
		for _, r := range runs[10:] {
			if !final(r) {
				return false
			}
		}
		return true
	})
	if n := reported(); n != 10 {
		logs(r2)
		t.Fatalf("%d runs reported while PostgreSQL was down, want 10 (it cannot store them)", n)
	}
	pg.ctl(t, "start")
	pgStarted = true
	natstest.Eventually(t, 60*time.Second, "the reporter to catch up after PostgreSQL returned", func() bool { return reported() == 15 })
	submit(3)
	r2.kill() // 2nd SIGKILL, runs in flight
	submit(2)
	r3 := startReporter(t, bin, url, p.srv.Creds("reporter"), dbURL, 3)
	natstest.Eventually(t, 90*time.Second, "all 20 runs reported", func() bool { return reported() == 20 })
	if !t.Failed() {
		defer func() {
			if t.Failed() {
				logs(r1, r2, r3)
			}
		}()
	}

	// Wait for the projection to reach the stream's end, then compare.
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	last, err := p.bus.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "the projection at the stream's end", func() bool {
		var pos int64
		return conn.QueryRow(ctx, `SELECT last_seq FROM projection_state`).Scan(&pos) == nil && uint64(pos) >= last
	})
	var stream []eventbus.Envelope
	if err := p.bus.Scan(ctx, []string{eventbus.SubjectPrefix + ".>"}, 0, func(e eventbus.Envelope) error {
		stream = append(stream, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var rows, distinct int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT stream_seq) FROM events`).Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != len(stream) || distinct != rows {
		t.Errorf("PostgreSQL holds %d event rows (%d sequences), the stream %d events", rows, distinct, len(stream))
	}
	for _, r := range runs {
		if c := countType(p.history(t, r), "report.ready"); c != 1 {
			t.Errorf("run %s: %d report.ready in the stream", r, c)
		}
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM reports WHERE run_id = $1`, r).Scan(&n); err != nil || n != 1 {
			t.Errorf("run %s: %d reports stored (%v)", r, n, err)
		}
	}
	var out, errOut bytes.Buffer
	if code := cli.Execute(ctx, []string{"audit", "verify", "--nats-url", url, "--database-url", dbURL, "--creds", p.srv.Creds("admin")}, &out, &errOut); code != 0 {
		t.Fatalf("audit verify: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	t.Log(strings.TrimSpace(out.String()))
	// The reporter logged the outage and its recovery.
	b, _ := os.ReadFile(r2.log.Name())
	if !strings.Contains(string(b), "read model unavailable; retrying") {
		t.Errorf("the second reporter did not report the outage in its log")
	}
}

func eventsOf(h []eventbus.Envelope) []*runbookv1.Event {
	out := make([]*runbookv1.Event, len(h))
	for i, e := range h {
		out[i] = e.Event
	}
	return out
}
