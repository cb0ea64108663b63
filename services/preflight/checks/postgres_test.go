package checks

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kis-core/runbook/domain/plan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// The machine's PostgreSQL: user postgres, trust authentication, database
// test.
const (
	pgAddr  = "127.0.0.1:5432"
	pgAdmin = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// TestPostgresRealServer runs the postgres check against the machine's
// PostgreSQL, passing and failing.
//
// A wrong password cannot be tested here: the server trusts every local
// connection, and trust authentication accepts any password for an
// existing role (the role below has a password and any password logs in).
// TestPostgresWrongPassword (pgauth_test.go) covers the refusal with a peer
// that speaks the protocol of a server with password authentication.
// The nearest failures the server can produce are tested instead: a
// database and a role that do not exist, a closed port, a server that never
// answers, and a query the server refuses.
func TestPostgresRealServer(t *testing.T) {
	t.Parallel()
	requireService(t, "PostgreSQL", pgAddr)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pgAdmin)
	if err != nil {
		t.Fatalf("connect as postgres to database test: %v", err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) })

	// Objects of this test only, dropped at the end.
	sfx := suffix(t)
	table, role := "runbook_pf_"+sfx, "runbook_pf_"+sfx
	password := "Pw-" + sfx + "-correct horse"
	for _, sql := range []string{
		fmt.Sprintf("CREATE TABLE %s (state text)", table),
		fmt.Sprintf("INSERT INTO %s VALUES ('ready')", table),
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", role, password),
		fmt.Sprintf("GRANT SELECT ON %s TO %s", table, role),
	} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	t.Cleanup(func() {
		for _, sql := range []string{"DROP TABLE IF EXISTS " + table, "DROP ROLE IF EXISTS " + role} {
			if _, err := admin.Exec(context.Background(), sql); err != nil {
				t.Errorf("cleanup %s: %v", sql, err)
			}
		}
	})

	closed := closedPort(t)
	silent := silentListener(t)
	kvSecret := "Kv-" + sfx + "-secret"
	badURLSecret := "Url-" + sfx + "-secret"
	env := envOf(map[string]string{
		"DATABASE_URL":  pgAdmin,
		"ROLE_DSN":      fmt.Sprintf("postgres://%s:%s@%s/test?sslmode=disable", role, "Pw-"+sfx+"-correct%20horse", pgAddr),
		"NO_DB_DSN":     fmt.Sprintf("postgres://%s:%s@%s/runbook_no_such_db_%s?sslmode=disable", role, "Pw-"+sfx+"-correct%20horse", pgAddr, sfx),
		"NO_ROLE_DSN":   fmt.Sprintf("postgres://runbook_no_role_%s:%s@%s/test?sslmode=disable", sfx, badURLSecret, pgAddr),
		"WRONG_PORT":    fmt.Sprintf("postgres://%s:%s@%s/test?sslmode=disable", role, badURLSecret, closed),
		"KV_WRONG_PORT": fmt.Sprintf("host=127.0.0.1 port=%s dbname=test user=postgres password=%s sslmode=disable", closed[len("127.0.0.1:"):], kvSecret),
		"SILENT":        fmt.Sprintf("postgres://%s:%s@%s/test?sslmode=disable", role, badURLSecret, silent),
		"BROKEN":        fmt.Sprintf("postgres://%s:%s@%s:notaport/test", role, badURLSecret, "127.0.0.1"),
	})
	secrets := []string{password, "Pw-" + sfx + "-correct%20horse", kvSecret, badURLSecret}
	r := &Runner{Env: env}
	ms := func(n int) plan.Duration { return plan.Duration{Duration: time.Duration(n) * time.Millisecond} }
	cases := []struct {
		name      string
		check     plan.Check
		status    runbookv1.CheckStatus
		value     string
		fragments []string
	}{
		{"default query", plan.Check{Postgres: &plan.PostgresCheck{DSNEnv: "DATABASE_URL"}}, pass, "PostgreSQL ",
			[]string{"PostgreSQL: CONNECTED (127.0.0.1:5432/test, server "}},
		{"own role with a password, own query", plan.Check{Postgres: &plan.PostgresCheck{DSNEnv: "ROLE_DSN", Query: "SELECT state, 42 FROM " + table}}, pass, "ready, 42",
			[]string{"PostgreSQL: CONNECTED"}},
		{"no rows", plan.Check{Postgres: &plan.PostgresCheck{DSNEnv: "ROLE_DSN", Query: "SELECT state FROM " + table + " WHERE false"}}, pass, "no rows",
			[]string{"PostgreSQL: CONNECTED"}},
		{"database does not exist", plan.Check{Postgres: &plan.PostgresCheck{DSNEnv: "NO_DB_DSN"}}, bad, "",
			[]string{"PostgreSQL: CONNECTION FAILED: 127.0.0.1:5432/runbook_no_such_db_" + sfx + ": ", `database "runbook_no_such_db_` + sfx + `" does not exist`, "SQLSTATE 3D000"}},
		{"role does not exist", plan.Check{Postgres: &plan.PostgresCheck{DSNEnv: "NO_ROLE_DSN"}}, bad, "",
			[]string{"PostgreSQL: CONNECTION FAILED: 127.0.0.1:5432/test: ", `role "runbook_no_role_` + sfx + `" does not exist`, "SQLSTATE 28000"}},
		{"wrong port", plan.Check{Postgres: &plan.PostgresCheck{DSNEnv: "WRONG_PORT"}}, bad, "",
			[]string{"PostgreSQL: CONNECTION FAILED: " + closed + "/test: ", "connection refused"}},
		{"wrong port, key=value DSN", plan.Check{Postgres: &plan.PostgresCheck{DSNEnv: "KV_WRONG_PORT"}}, bad, "",
			[]string{"PostgreSQL: CONNECTION FAILED: " + closed + "/test: ", "connection refused"}},
		{"server never answers", plan.Check{Timeout: ms(300), Postgres: &plan.PostgresCheck{DSNEnv: "SILENT"}}, bad, "",
			[]string{"PostgreSQL: CONNECTION FAILED: timed out after 300ms (" + silent + "/test: no answer)"}},
		{"query refused", plan.Check{Postgres: &plan.PostgresCheck{DSNEnv: "ROLE_DSN", Query: "SELEC 1"}}, bad, "",
			[]string{"PostgreSQL: QUERY FAILED: 127.0.0.1:5432/test: ", "syntax error", "SQLSTATE 42601"}},
		{"query on a missing table", plan.Check{Postgres: &plan.PostgresCheck{DSNEnv: "ROLE_DSN", Query: "SELECT * FROM runbook_no_table_" + sfx}}, bad, "",
			[]string{"PostgreSQL: QUERY FAILED", "does not exist", "SQLSTATE 42P01"}},
		{"DSN does not parse", plan.Check{Postgres: &plan.PostgresCheck{DSNEnv: "BROKEN"}}, bad, "",
			[]string{"PostgreSQL: CONNECTION FAILED: environment variable BROKEN does not hold a valid PostgreSQL DSN", "port"}},
		{"DSN not set", plan.Check{Postgres: &plan.PostgresCheck{DSNEnv: "UNSET_DSN"}}, bad, "",
			[]string{"PostgreSQL: CONNECTION FAILED: environment variable UNSET_DSN is NOT SET"}},
		{"not blocking", plan.Check{Blocking: new(false), Postgres: &plan.PostgresCheck{DSNEnv: "NO_DB_DSN"}}, warn, "",
			[]string{"does not exist"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			res := r.Run(ctx, 0, c.check)
			expect(t, res, c.status, secrets, c.fragments...)
			if !strings.Contains(res.Value, c.value) {
				t.Errorf("value %q does not contain %q", res.Value, c.value)
			}
		})
	}
}
