package checks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kis-core/runbook/domain/plan"
)

const natsFailed = "NATS: CONNECTION FAILED"

// nats connects to a NATS server (or one of a comma-separated list) and
// reports its version. It is a connectivity check of the plan's target:
// runbook's own minimum server version (eventbus.MinServerVersion) is about
// runbook's bus, not the target's, so any version that connects passes.
// Credentials in the URL (url_env) are secrets: messages show the URL with
// the password masked.
func (r *Runner) nats(ctx context.Context, c *plan.NATSCheck, j *job) error {
	j.res.Threshold = "connects"
	raw := c.URL
	if c.URLEnv != "" {
		v, ok := r.lookup(c.URLEnv)
		if !ok || v == "" {
			return fail(natsFailed, "environment variable %s is NOT SET", c.URLEnv)
		}
		raw = strings.TrimSpace(v)
	}
	if raw == "" {
		// nats.go would take "" for nats://127.0.0.1:4222.
		return fail(natsFailed, "no url: write url (nats://host:4222) or url_env")
	}
	shown := natsShown(raw, j)
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if timeout <= 0 {
		return fail(natsFailed, "%s: %v", shown, ctx.Err())
	}
	type outcome struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		nc, err := nats.Connect(raw,
			nats.Name("runbook-preflight"),
			nats.Timeout(timeout),
			nats.NoReconnect(),
			nats.MaxReconnects(0),
		)
		done <- outcome{nc, err}
	}()
	var o outcome
	select {
	case o = <-done:
	case <-ctx.Done():
		go func() { // close a connection that arrives late
			if o := <-done; o.nc != nil {
				o.nc.Close()
			}
		}()
		return fail(natsFailed, "%s: no answer", shown)
	}
	if o.err != nil {
		if expired(ctx) {
			return fail(natsFailed, "%s: no answer", shown)
		}
		if errors.Is(o.err, nats.ErrNoServers) {
			// nats.go keeps the why to itself: ask the network.
			return fail(natsFailed, "%s: %v (%s)", shown, o.err, natsDialCause(ctx, raw))
		}
		return fail(natsFailed, "%s: %v", shown, o.err)
	}
	defer o.nc.Close()
	v := o.nc.ConnectedServerVersion()
	j.res.Value = "NATS " + v
	server := o.nc.ConnectedUrlRedacted()
	if server == "" {
		server = shown
	}
	j.res.Message = fmt.Sprintf("NATS: CONNECTED (%s, server %s)", server, v)
	return nil
}

// natsDialCause dials each server of the list and says why the first one
// that fails did, without its credentials.
func natsDialCause(ctx context.Context, raw string) string {
	var causes []string
	for _, p := range strings.Split(raw, ",") {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.Hostname() == "" {
			continue
		}
		port := u.Port()
		if port == "" {
			port = "4222"
		}
		addr := net.JoinHostPort(u.Hostname(), port)
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			causes = append(causes, addr+": "+netCause(ctx, err))
			continue
		}
		_ = conn.Close()
		causes = append(causes, addr+": accepts TCP but did not complete the NATS handshake")
	}
	if len(causes) == 0 {
		return "no server could be tried"
	}
	return strings.Join(causes, "; ")
}

// natsShown is the URL list with passwords and tokens masked; every
// credential found is marked secret.
func natsShown(raw string, j *job) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		u, err := url.Parse(p)
		if err != nil {
			j.secretsOfDSN(p)
			parts[i] = "(a NATS URL that does not parse)"
			continue
		}
		if u.User != nil {
			j.secret(p)
			if pw, ok := u.User.Password(); ok {
				j.secret(pw)
			} else {
				j.secret(u.User.Username()) // a token
				u.User = url.User("xxxxx")
			}
		}
		parts[i] = u.Redacted()
	}
	return strings.Join(parts, ",")
}
