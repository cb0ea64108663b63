package checks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kis-core/runbook/domain/plan"
)

const (
	pgFailed      = "PostgreSQL: CONNECTION FAILED"
	pgQueryFailed = "PostgreSQL: QUERY FAILED"
	maxValueLen   = 200
)

// postgres is the seed's `psql -c "SELECT version();"`: connect with the DSN
// held by the environment variable dsn_env, run the query, report its first
// row. The DSN and its password are secrets: messages name at most the
// host:port and the database.
func (r *Runner) postgres(ctx context.Context, c *plan.PostgresCheck, j *job) error {
	query := c.EffectiveQuery()
	j.res.Threshold = "connects and runs " + query
	dsn, ok := r.lookup(c.DSNEnv)
	if !ok || dsn == "" {
		return fail(pgFailed, "environment variable %s is NOT SET", c.DSNEnv)
	}
	j.secret(dsn)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// The parse error quotes the DSN (pgx redacts the password, best
		// effort): say only what is wrong, in words of our own.
		j.secretsOfDSN(dsn)
		return fail(pgFailed, "environment variable %s does not hold a valid PostgreSQL DSN (postgres://user:password@host:5432/db or host=… dbname=… pairs): %s", c.DSNEnv, pgParseCause(err))
	}
	j.secret(cfg.Password)
	where := pgWhere(cfg)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fail(pgFailed, "%s: %s", where, pgCause(ctx, err))
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	// The simple protocol runs any statement the operator wrote, and
	// returns every column as text-decodable values.
	rows, err := conn.Query(ctx, query, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return fail(pgQueryFailed, "%s: %s", where, pgCause(ctx, err))
	}
	var first []string
	n := 0
	for rows.Next() {
		if n == 0 {
			vals, err := rows.Values()
			if err != nil {
				rows.Close()
				return fail(pgQueryFailed, "%s: %s", where, pgCause(ctx, err))
			}
			for _, v := range vals {
				if v == nil {
					first = append(first, "NULL")
				} else {
					first = append(first, fmt.Sprint(v))
				}
			}
		}
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail(pgQueryFailed, "%s: %s", where, pgCause(ctx, err))
	}
	switch {
	case first != nil:
		j.res.Value = clip(strings.Join(first, ", "), maxValueLen)
	case n == 0 && len(rows.FieldDescriptions()) > 0:
		j.res.Value = "no rows"
	default:
		j.res.Value = rows.CommandTag().String()
	}
	server := conn.PgConn().ParameterStatus("server_version")
	if i := strings.IndexByte(server, ' '); i > 0 {
		server = server[:i]
	}
	j.res.Message = fmt.Sprintf("PostgreSQL: CONNECTED (%s, server %s)", where, server)
	return nil
}

// pgWhere is host:port/database: what a message may say of the DSN.
func pgWhere(cfg *pgx.ConnConfig) string {
	host := cfg.Host
	if strings.HasPrefix(host, "/") { // a Unix socket directory
		return fmt.Sprintf("%s/.s.PGSQL.%d/%s", host, cfg.Port, cfg.Database)
	}
	return net.JoinHostPort(host, strconv.Itoa(int(cfg.Port))) + "/" + cfg.Database
}

// pgCause says why a connection or query failed without quoting the DSN:
// the server's own error (its severity, message and SQLSTATE), the
// network's, or a timeout.
func pgCause(ctx context.Context, err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		s := pe.Severity + ": " + pe.Message
		if pe.Detail != "" {
			s += " (" + pe.Detail + ")"
		}
		return s + " (SQLSTATE " + pe.Code + ")"
	}
	if ctx.Err() != nil || expired(ctx) || pgconn.Timeout(err) {
		return "no answer"
	}
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Err != nil {
		return ne.Err.Error()
	}
	// ConnectError's text starts with "failed to connect to `user=… database=…`:";
	// what follows names the address and the cause (TLS, authentication).
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		if inner := errors.Unwrap(ce); inner != nil {
			return inner.Error()
		}
	}
	return err.Error()
}

// pgParseCause is the reason a DSN did not parse, without the DSN.
func pgParseCause(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		if inner := errors.Unwrap(pe); inner != nil {
			return inner.Error()
		}
		// The message alone, after the quoted connection string.
		s := pe.Error()
		if i := strings.LastIndex(s, "`: "); i >= 0 {
			return s[i+3:]
		}
		return "cannot parse it"
	}
	return "cannot parse it"
}

// secretsOfDSN marks the password of a DSN that pgx could not parse, found
// the way a person would: after "password=" or between ':' and '@'.
func (j *job) secretsOfDSN(dsn string) {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok {
			j.secret(p)
		}
	}
	if i := strings.Index(dsn, "password="); i >= 0 {
		rest := strings.TrimPrefix(dsn[i+len("password="):], "'")
		if k := strings.IndexAny(rest, "' &"); k >= 0 {
			rest = rest[:k]
		}
		j.secret(rest)
	}
	if at := strings.LastIndexByte(dsn, '@'); at > 0 {
		if colon := strings.LastIndexByte(dsn[:at], ':'); colon >= 0 {
			j.secret(dsn[colon+1 : at])
		}
	}
}

func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
