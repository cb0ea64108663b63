package allinone_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/eventbus/natstest"
	"github.com/kis-core/runbook/services/reporter/pgstore/pgtest"
)

// pgCheck says the database holds every event of the run once, with its
// sequence, and the run's report byte for byte.
func pgCheck(t *testing.T, dbURL string, p *pipeline, run string, reportJSON string) {
	t.Helper()
	ctx := context.Background()
	h, err := p.bus.RunHistory(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The reporter stores events as it consumes them: wait for the last one.
	natstest.Eventually(t, 10*time.Second, "every event of the run in PostgreSQL", func() bool {
		var n int
		return conn.QueryRow(ctx, `SELECT count(*) FROM events WHERE run_id = $1`, run).Scan(&n) == nil && n == len(h)
	})
	for _, env := range h {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM events WHERE event_id = $1 AND run_id = $2 AND stream_seq = $3`, env.Event.GetId(), run, int64(env.Seq)).Scan(&n); err != nil || n != 1 {
			t.Errorf("event %s (seq %d): %d rows, %v", env.Event.GetId(), env.Seq, n, err)
		}
	}
	var reports int
	var js string
	if err := conn.QueryRow(ctx, `SELECT count(*), max(report_json) FROM reports WHERE run_id = $1`, run).Scan(&reports, &js); err != nil {
		t.Fatal(err)
	}
	if reports != 1 || js != reportJSON {
		t.Errorf("reports: %d rows; report_json equal byte for byte: %v", reports, js == reportJSON)
	}
	var total, distinct int
	if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT event_id) FROM events`).Scan(&total, &distinct); err != nil || total != distinct {
		t.Errorf("events: %d rows, %d ids, %v", total, distinct, err)
	}
}

// With --database-url the reporter keeps its read model in PostgreSQL: a
// run ends with each of its events stored once and its report byte for
// byte; a restart on the same data dir and database writes nothing twice.
func TestPostgresReadModel(t *testing.T) {
	dbURL := pgtest.URL(t)
	dir := t.TempDir()
	first := startPipeline(t, func(o *allinone.Options) { o.DataDir = dir; o.DatabaseURL = dbURL })
	run := first.submit(t, []byte(trivialPlan))
	rr := first.report(t, run, 30*time.Second)
	if rr.Status != "SUCCESS" {
		t.Fatalf("run ended %s", rr.Status)
	}
	pgCheck(t, dbURL, first, run, rr.GetReportJson())
	first.stop()

	second := startPipeline(t, func(o *allinone.Options) { o.DataDir = dir; o.DatabaseURL = dbURL })
	natstest.Eventually(t, 10*time.Second, "reporter read model from PostgreSQL", func() bool {
		r, err := second.srv.Reporter.Model().Run(context.Background(), run)
		return err == nil && r != nil && r.Status == "SUCCESS" && r.Report != nil
	})
	next := second.submit(t, []byte(trivialPlan))
	rr2 := second.report(t, next, 30*time.Second)
	pgCheck(t, dbURL, second, run, rr.GetReportJson())
	pgCheck(t, dbURL, second, next, rr2.GetReportJson())
	if c := countType(second.history(t, run), "report.ready"); c != 1 {
		t.Fatalf("first run has %d report.ready after restart", c)
	}

	// runbook audit verify: clean, then one edited payload and one deleted row.
	audit := func() (int, string) {
		var out, errOut bytes.Buffer
		code := cli.Execute(context.Background(), []string{"audit", "verify", "--nats-url", second.srv.NATSURL(), "--database-url", dbURL, "--creds", second.srv.Creds("admin"), "--keyring", second.srv.Identities().KeyringPath()}, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := audit(); code != 0 || !strings.Contains(out, "audit ok") {
		t.Fatalf("audit of a faithful database: exit %d\n%s", code, out)
	}
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	// Drop the projection and rebuild it from the stream: the same reports,
	// byte for byte, and the audit passes.
	reports := func() map[string]string {
		t.Helper()
		rows, err := conn.Query(context.Background(), `SELECT run_id, report_json FROM reports`)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for rows.Next() {
			var id, js string
			if err := rows.Scan(&id, &js); err != nil {
				t.Fatal(err)
			}
			m[id] = js
		}
		return m
	}
	before := reports()
	if _, err := conn.Exec(context.Background(), `TRUNCATE runs, events, reports, approvals; UPDATE projection_state SET last_seq = 0`); err != nil {
		t.Fatal(err)
	}
	{
		var out, errOut bytes.Buffer
		code := cli.Execute(context.Background(), []string{"replay", "--rebuild", "--nats-url", second.srv.NATSURL(), "--database-url", dbURL, "--creds", second.srv.Creds("admin")}, &out, &errOut)
		if code != 0 || !strings.Contains(out.String(), "rebuilt:") {
			t.Fatalf("replay --rebuild: exit %d\n%s%s", code, out.String(), errOut.String())
		}
	}
	after := reports()
	if len(after) != 2 || len(after) != len(before) {
		t.Fatalf("reports after rebuild: %d, before %d", len(after), len(before))
	}
	for id, js := range before {
		if after[id] != js {
			t.Errorf("run %s: report after rebuild differs from before", id)
		}
	}
	if code, out := audit(); code != 0 || !strings.Contains(out, "audit ok") {
		t.Fatalf("audit after rebuild: exit %d\n%s", code, out)
	}
	// replay --run prints the run's timeline from the stream.
	{
		var out, errOut bytes.Buffer
		code := cli.Execute(context.Background(), []string{"replay", "--run", run, "--nats-url", second.srv.NATSURL(), "--creds", second.srv.Creds("admin")}, &out, &errOut)
		if code != 0 || !strings.Contains(out.String(), "change.requested") && !strings.Contains(out.String(), "PRE-FLIGHT") ||
			!strings.Contains(out.String(), "events; status SUCCESS") {
			t.Errorf("replay --run: exit %d\n%s%s", code, out.String(), errOut.String())
		}
	}

	if _, err := conn.Exec(context.Background(), `UPDATE events SET payload = jsonb_set(payload, '{actor}', '"mallory"') WHERE event_id = $1`, run+"/change.requested"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(context.Background(), `DELETE FROM events WHERE event_id = $1`, next+"/deploy.done"); err != nil {
		t.Fatal(err)
	}
	// The requester's signature altered in PostgreSQL's copy.
	if _, err := conn.Exec(context.Background(), `UPDATE events SET payload = jsonb_set(payload, '{signature,nonce}', '"00000000000000000000000000000000"') WHERE event_id = $1`, next+"/change.requested"); err != nil {
		t.Fatal(err)
	}
	code, out := audit()
	if !strings.Contains(out, "run "+next+" event "+next+"/change.requested (seq ") {
		t.Errorf("audit does not name the change request whose signature was altered in PostgreSQL:\n%s", out)
	}
	if code != 1 || !strings.Contains(out, "run "+run+" event "+run+"/change.requested (seq ") || !strings.Contains(out, "stored payload differs") ||
		!strings.Contains(out, "run "+next+" event "+next+"/deploy.done (seq ") || !strings.Contains(out, "missing from the database") {
		t.Fatalf("audit after tampering: exit %d\n%s", code, out)
	}
}
