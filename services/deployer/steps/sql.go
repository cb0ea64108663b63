package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kis-core/runbook/domain/plan"
)

// sql runs the step's statements (or its file, split by SplitSQL) in one
// transaction; any error rolls it all back. Messages name the statement and
// carry the server's message, never the DSN.
func (x *Executor) sql(ctx context.Context, q *plan.SQLStep) Result {
	dsn, ok := x.lookup(q.DSNEnv)
	if !ok || dsn == "" {
		return Result{Err: fmt.Errorf("sql: environment variable %s is NOT SET", q.DSNEnv)}
	}
	stmts := q.Statements
	if q.File != "" {
		b, err := os.ReadFile(q.File)
		if q.IfExists && errors.Is(err, fs.ErrNotExist) {
			return Result{OutputTail: fmt.Sprintf("no pending migrations: %s does not exist (if_exists)", q.File)}
		}
		if err != nil {
			return Result{Err: fmt.Errorf("sql: read %s: %w", q.File, err)}
		}
		stmts = SplitSQL(string(b))
		if len(stmts) == 0 {
			return Result{Err: fmt.Errorf("sql: %s has no statement", q.File)}
		}
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return Result{Err: fmt.Errorf("sql: the DSN in %s does not parse (value not shown)", q.DSNEnv)}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return Result{Err: fmt.Errorf("sql: connect with %s: %w", q.DSNEnv, err)}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return Result{Err: fmt.Errorf("sql: begin: %w", err)}
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // no-op after Commit
	var rows int64
	for i, st := range stmts {
		tag, err := tx.Exec(ctx, st, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			return Result{
				OutputTail: fmt.Sprintf("statement %d of %d failed; the transaction was rolled back, nothing was applied", i+1, len(stmts)),
				Err:        fmt.Errorf("sql: statement %d of %d: %s (rolled back)", i+1, len(stmts), serverMessage(err)),
			}
		}
		rows += tag.RowsAffected()
	}
	if err := tx.Commit(ctx); err != nil {
		return Result{Err: fmt.Errorf("sql: commit: %s (rolled back)", serverMessage(err))}
	}
	return Result{OutputTail: fmt.Sprintf("applied %d statement(s) in one transaction (%d row(s) affected)", len(stmts), rows)}
}

// serverMessage is the server's message for a PostgreSQL error, or the
// error itself.
func serverMessage(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		m := pe.Severity + ": " + pe.Message + " (SQLSTATE " + pe.Code + ")"
		if pe.Detail != "" {
			m += " — " + pe.Detail
		}
		return m
	}
	return err.Error()
}
