package checks

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/kis-core/runbook/domain/plan"
)

const (
	redisFailed     = "Redis: CONNECTION FAILED"
	redisAuthFailed = "Redis: AUTH FAILED"
)

// redisTarget is where and how to reach a Redis server.
type redisTarget struct {
	addr     string // host:port
	user     string // ACL user (Redis 6+), from the URL
	password string
	db       int
	tls      bool // rediss://
}

// redis is the seed's `redis-cli ping`, with go-redis (over TLS for
// rediss://): AUTH when there is a password, SELECT when the URL names a
// database, PING, then INFO server for the version (best effort). A server
// that wants a password (NOAUTH) or refuses one (WRONGPASS, or ERR when it
// has none) fails with the server's own words; the password never appears.
func (r *Runner) redis(ctx context.Context, c *plan.RedisCheck, j *job) error {
	j.res.Threshold = "+PONG"
	t, err := r.redisTarget(c, j)
	if err != nil {
		return err
	}
	// The command that failed on connect (go-redis returns its error
	// without the wrapping OnConnect gives it).
	var failed atomic.Value
	opt := &goredis.Options{
		Addr: t.addr,
		// AUTH and SELECT are sent here rather than by go-redis (which
		// authenticates in HELLO, where a server without a password
		// accepts any): AUTH <password> to a server that has none is an
		// error worth failing on — the plan believes it is protected.
		OnConnect: func(ctx context.Context, cn *goredis.Conn) error {
			if t.password != "" {
				cmd := cn.Auth(ctx, t.password)
				if t.user != "" {
					cmd = cn.AuthACL(ctx, t.user, t.password)
				}
				if err := cmd.Err(); err != nil {
					failed.Store("AUTH")
					return err
				}
			}
			if t.db != 0 {
				if err := cn.Select(ctx, t.db).Err(); err != nil {
					failed.Store(fmt.Sprintf("SELECT %d", t.db))
					return err
				}
			}
			return nil
		},
		// RESP2 and nothing else on connect (no CLIENT SETINFO or
		// MAINT_NOTIFICATIONS an ACL user may not be allowed).
		Protocol: 2, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		// One try, bounded by the check's context.
		MaxRetries: -1, DialerRetries: 1, ContextTimeoutEnabled: true, PoolSize: 1,
	}
	if t.tls {
		host, _, _ := net.SplitHostPort(t.addr)
		opt.TLSConfig = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	}
	client := goredis.NewClient(opt)
	defer client.Close()

	pong, err := client.Ping(ctx).Result()
	if err != nil {
		step, _ := failed.Load().(string)
		return redisError(ctx, t, cmp.Or(step, "PING"), err)
	}
	if pong != "PONG" {
		j.res.Value = pong
		return fail(redisFailed, "%s answered %q to PING", t.addr, pong)
	}
	j.res.Value = "PONG"
	if info, err := client.InfoMap(ctx, "server").Result(); err == nil {
		if v := info["Server"]["redis_version"]; v != "" {
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

// redisError words a failed check: a refused or missing password is AUTH
// FAILED with the server's words, anything else CONNECTION FAILED naming
// the command that failed (step).
func redisError(ctx context.Context, t redisTarget, step string, err error) error {
	var rerr goredis.Error
	if !errors.As(err, &rerr) {
		return fail(redisFailed, "%s: %s: %s", t.addr, step, netCause(ctx, err))
	}
	text := rerr.Error()
	switch {
	case step == "AUTH" && strings.HasPrefix(text, "ERR AUTH") && strings.Contains(text, "without any password configured"):
		return fail(redisAuthFailed, "%s: a password was given but the server has none (%s)", t.addr, text)
	case step == "AUTH" || strings.HasPrefix(text, "WRONGPASS"):
		return fail(redisAuthFailed, "%s: the server refused the password (%s)", t.addr, text)
	case strings.HasPrefix(text, "NOAUTH"):
		return fail(redisAuthFailed, "%s: the server wants a password (%s): set password_env, or give the password in a redis:// URL", t.addr, text)
	}
	return fail(redisFailed, "%s: %s: %s", t.addr, step, text)
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
