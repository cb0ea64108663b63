package steps_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/services/deployer/steps"
)

const testDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// postgres connects to the machine's PostgreSQL; without one the test fails
// under CI=true and is skipped (loudly) elsewhere.
func postgres(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := net.DialTimeout("tcp", "127.0.0.1:5432", time.Second)
	if err == nil {
		_ = c.Close()
	}
	var conn *pgx.Conn
	if err == nil {
		conn, err = pgx.Connect(ctx, testDSN)
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL at 127.0.0.1:5432 (user postgres, database test) is required under CI=true: %v", err)
		}
		t.Skipf("SKIPPED: no PostgreSQL at 127.0.0.1:5432 (user postgres, database test): %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func sqlExecutor() *steps.Executor {
	return &steps.Executor{Env: func(n string) (string, bool) {
		if n == "DATABASE_URL" {
			return testDSN, true
		}
		return "", false
	}}
}

// A good migration (from a file) applies; a bad one (its second statement
// fails) leaves the schema as it was, and its error names the statement and
// carries the server's message without the DSN.
func TestSQLStepTransaction(t *testing.T) {
	t.Parallel()
	conn := postgres(t)
	ctx := context.Background()
	schema := fmt.Sprintf("rb_sqlstep_%d", time.Now().UnixNano())
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE") })
	x := sqlExecutor()

	file := filepath.Join(t.TempDir(), "001.sql")
	migration := fmt.Sprintf(`-- 001: the first migration; with a ; in a comment
CREATE SCHEMA %[1]s;
CREATE TABLE %[1]s.items (id int PRIMARY KEY, note text);
INSERT INTO %[1]s.items VALUES (1, 'a;b'), (2, $$it's$$);
`, schema)
	if err := os.WriteFile(file, []byte(migration), 0o600); err != nil {
		t.Fatal(err)
	}
	res := x.Run(ctx, plan.Step{SQL: &plan.SQLStep{DSNEnv: "DATABASE_URL", File: file}}, nil)
	if res.Err != nil || !strings.Contains(res.OutputTail, "applied 3 statement(s)") {
		t.Fatalf("good migration: %q %v", res.OutputTail, res.Err)
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+schema+".items").Scan(&n); err != nil || n != 2 {
		t.Fatalf("after the good migration: %d rows, %v", n, err)
	}

	bad := []string{
		"ALTER TABLE " + schema + ".items ADD COLUMN extra int",
		"INSERT INTO " + schema + ".nope VALUES (1)",
		"DROP TABLE " + schema + ".items",
	}
	res = x.Run(ctx, plan.Step{SQL: &plan.SQLStep{DSNEnv: "DATABASE_URL", Statements: bad}}, nil)
	if res.Err == nil {
		t.Fatal("a bad migration succeeded")
	}
	msg := res.Err.Error()
	if !strings.Contains(msg, "statement 2 of 3") || !strings.Contains(msg, "does not exist") || !strings.Contains(msg, "42P01") || strings.Contains(msg+res.OutputTail, testDSN) {
		t.Errorf("bad migration error: %q (output %q)", msg, res.OutputTail)
	}
	var cols int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'items'", schema).Scan(&cols); err != nil || cols != 2 {
		t.Errorf("after the bad migration the table has %d columns (%v), want the 2 it had", cols, err)
	}

	// No DSN variable: a clear error, nothing run.
	res = (&steps.Executor{Env: func(string) (string, bool) { return "", false }}).Run(ctx, plan.Step{SQL: &plan.SQLStep{DSNEnv: "DATABASE_URL", Statements: bad}}, nil)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "DATABASE_URL is NOT SET") {
		t.Errorf("missing DSN: %v", res.Err)
	}
}

// The seed's "if [ -f migrations/pending.sql ] ... else No pending
// migrations": with if_exists a missing file succeeds and says so (without
// touching the database); without it, a missing file fails the step; an
// existing file runs.
func TestSQLStepIfExists(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	x := sqlExecutor()
	missingFile := filepath.Join(t.TempDir(), "pending.sql")
	res := x.Run(ctx, plan.Step{SQL: &plan.SQLStep{DSNEnv: "DATABASE_URL", File: missingFile, IfExists: true}}, nil)
	if res.Err != nil || !strings.Contains(res.OutputTail, "no pending migrations") {
		t.Fatalf("if_exists, no file: %q %v", res.OutputTail, res.Err)
	}
	res = x.Run(ctx, plan.Step{SQL: &plan.SQLStep{DSNEnv: "DATABASE_URL", File: missingFile}}, nil)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "pending.sql") {
		t.Fatalf("no if_exists, no file: %q %v", res.OutputTail, res.Err)
	}
	conn := postgres(t)
	table := fmt.Sprintf("rb_ifexists_%d", time.Now().UnixNano())
	t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) })
	if err := os.WriteFile(missingFile, []byte("CREATE TABLE "+table+" (id int);"), 0o600); err != nil {
		t.Fatal(err)
	}
	res = x.Run(ctx, plan.Step{SQL: &plan.SQLStep{DSNEnv: "DATABASE_URL", File: missingFile, IfExists: true}}, nil)
	if res.Err != nil || !strings.Contains(res.OutputTail, "applied 1 statement(s)") {
		t.Fatalf("if_exists, file present: %q %v", res.OutputTail, res.Err)
	}
}
