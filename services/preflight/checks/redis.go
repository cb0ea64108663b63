package checks

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/kis-core/runbook/domain/plan"
)

const (
	redisFailed     = "Redis: CONNECTION FAILED"
	redisAuthFailed = "Redis: AUTH FAILED"
	maxRedisReply   = 1 << 20
)

// redisTarget is where and how to reach a Redis server.
type redisTarget struct {
	addr     string // host:port
	user     string // ACL user (Redis 6+), from the URL
	password string
	db       int
	tls      bool // rediss://
}

// redis is the seed's `redis-cli ping`, spoken in RESP over TCP (or TLS for
// rediss://): AUTH when there is a password, SELECT when the URL names a
// database, PING, then INFO server for the version (best effort). A server
// that wants a password (-NOAUTH) or refuses one (-WRONGPASS, or -ERR when it
// has none) fails with the server's own words; the password never appears.
func (r *Runner) redis(ctx context.Context, c *plan.RedisCheck, j *job) error {
	j.res.Threshold = "+PONG"
	t, err := r.redisTarget(c, j)
	if err != nil {
		return err
	}
	var conn net.Conn
	if t.tls {
		host, _, _ := net.SplitHostPort(t.addr)
		d := tls.Dialer{Config: &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}}
		conn, err = d.DialContext(ctx, "tcp", t.addr)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", t.addr)
	}
	if err != nil {
		return fail(redisFailed, "%s: %s", t.addr, netCause(ctx, err))
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	br := bufio.NewReader(conn)
	call := func(args ...string) (kind byte, text string, err error) {
		if _, err := conn.Write(respCommand(args...)); err != nil {
			return 0, "", err
		}
		return readRESP(br)
	}

	if t.password != "" {
		args := []string{"AUTH", t.password}
		if t.user != "" {
			args = []string{"AUTH", t.user, t.password}
		}
		kind, text, err := call(args...)
		switch {
		case err != nil:
			return fail(redisFailed, "%s: AUTH: %s", t.addr, netCause(ctx, err))
		case kind == '-' && strings.HasPrefix(text, "ERR AUTH") && strings.Contains(text, "without any password configured"):
			return fail(redisAuthFailed, "%s: a password was given but the server has none (%s)", t.addr, text)
		case kind == '-':
			return fail(redisAuthFailed, "%s: the server refused the password (%s)", t.addr, text)
		}
	}
	if t.db != 0 {
		kind, text, err := call("SELECT", strconv.Itoa(t.db))
		switch {
		case err != nil:
			return fail(redisFailed, "%s: SELECT %d: %s", t.addr, t.db, netCause(ctx, err))
		case kind == '-':
			return fail(redisFailed, "%s: SELECT %d: %s", t.addr, t.db, text)
		}
	}
	kind, text, err := call("PING")
	switch {
	case err != nil:
		return fail(redisFailed, "%s: PING: %s", t.addr, netCause(ctx, err))
	case kind == '-' && strings.HasPrefix(text, "NOAUTH"):
		return fail(redisAuthFailed, "%s: the server wants a password (%s): set password_env, or give the password in a redis:// URL", t.addr, text)
	case kind == '-' && strings.HasPrefix(text, "WRONGPASS"):
		return fail(redisAuthFailed, "%s: %s", t.addr, text)
	case kind != '+' || text != "PONG":
		j.res.Value = string(kind) + text
		return fail(redisFailed, "%s answered %q to PING", t.addr, string(kind)+text)
	}
	j.res.Value = "PONG"
	if kind, info, err := call("INFO", "server"); err == nil && kind == '$' {
		if v := infoField(info, "redis_version"); v != "" {
			j.res.Value += ", Redis " + v
		}
	}
	where := t.addr
	if t.db != 0 {
		where += fmt.Sprintf(", db %d", t.db)
	}
	j.res.Message = "Redis: CONNECTED (" + where + ")"
	return nil
}

// redisTarget reads the address (and the password and database of a
// redis:// URL) from the plan or the environment.
func (r *Runner) redisTarget(c *plan.RedisCheck, j *job) (redisTarget, error) {
	var t redisTarget
	raw, from := c.Address, "address"
	if c.AddressEnv != "" {
		v, ok := r.lookup(c.AddressEnv)
		if !ok || v == "" {
			return t, fail(redisFailed, "environment variable %s is NOT SET", c.AddressEnv)
		}
		raw, from = strings.TrimSpace(v), "environment variable "+c.AddressEnv
	}
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			j.secretsOfDSN(raw)
			return t, fail(redisFailed, "%s does not hold host:port or a redis://[user:password@]host:port/db URL", from)
		}
		if u.User != nil {
			j.secret(raw)
			t.user = u.User.Username()
			t.password, _ = u.User.Password()
			j.secret(t.password)
		}
		switch u.Scheme {
		case "redis":
		case "rediss":
			t.tls = true
		default:
			return t, fail(redisFailed, "%s holds a %s:// URL: want redis:// or rediss://", from, u.Scheme)
		}
		if u.Hostname() == "" {
			return t, fail(redisFailed, "%s: the URL has no host", from)
		}
		port := u.Port()
		if port == "" {
			port = "6379"
		}
		t.addr = net.JoinHostPort(u.Hostname(), port)
		if db := strings.Trim(u.Path, "/"); db != "" {
			n, err := strconv.Atoi(db)
			if err != nil || n < 0 {
				return t, fail(redisFailed, "%s: the URL's path %q is not a database number", from, u.Path)
			}
			t.db = n
		}
	} else {
		if _, _, err := net.SplitHostPort(raw); err != nil {
			return t, fail(redisFailed, "%s is not host:port or a redis:// URL", from)
		}
		t.addr = raw
	}
	if c.PasswordEnv != "" {
		p, ok := r.lookup(c.PasswordEnv)
		if !ok || p == "" {
			return t, fail(redisFailed, "environment variable %s (the password) is NOT SET", c.PasswordEnv)
		}
		t.password = p
		j.secret(p)
	}
	return t, nil
}

// respCommand encodes a command as a RESP array of bulk strings, so that
// a password with spaces or quotes is sent as it is.
func respCommand(args ...string) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}

// readRESP reads one simple reply: +status, -error, :integer or $bulk
// (whose text is returned; a nil bulk is kind '$' with no text).
func readRESP(br *bufio.Reader) (kind byte, text string, err error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return 0, "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return 0, "", errors.New("empty reply")
	}
	kind, text = line[0], line[1:]
	switch kind {
	case '+', '-', ':':
		return kind, text, nil
	case '$':
		n, err := strconv.Atoi(text)
		if err != nil || n > maxRedisReply {
			return 0, "", fmt.Errorf("bad bulk reply %q", clip(line, 40))
		}
		if n < 0 {
			return kind, "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return 0, "", err
		}
		return kind, string(buf[:n]), nil
	}
	return 0, "", fmt.Errorf("not a Redis reply: %q", clip(line, 40))
}

// infoField finds "name:value" in an INFO reply.
func infoField(info, name string) string {
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), name+":"); ok {
			return v
		}
	}
	return ""
}

// netCause is a network error without Go's wrapping noise (the address is
// already in the message); "no answer" when the check's time ran out.
func netCause(ctx context.Context, err error) string {
	if ctx.Err() != nil || expired(ctx) {
		return "no answer"
	}
	if errors.Is(err, io.EOF) {
		return "the server closed the connection"
	}
	var ne *net.OpError
	if errors.As(err, &ne) && ne.Err != nil {
		return ne.Err.Error()
	}
	return err.Error()
}
