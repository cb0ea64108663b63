package httprun

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"time"
)

// rawClient is the load engine's HTTP/1.1 client for plain-http targets:
// each request is serialised once (a load test sends the same bytes again
// and again), written straight to a kept-alive connection, and its answer
// parsed by net/http's own http.ReadResponse — without net/http
// Transport's two goroutines and channel hand-offs per connection, which
// cost more CPU than the request itself. It is used when the test brings
// no client of its own, the URL is http:// and no proxy applies; anything
// else goes through net/http.
type rawClient struct {
	dialer net.Dialer
	mu     sync.Mutex
	idle   map[string][]*rawConn // by host:port
	closed bool
	// hard, when done, cuts every connection (the graceful stop is over).
	hard context.Context
}

type rawConn struct {
	c      net.Conn
	br     *bufio.Reader
	reused bool
	stop   func() bool
}

// rawRequest is a Prepared request serialised for the wire.
type rawRequest struct {
	addr string // host:port to dial
	wire []byte
	req  *http.Request // for http.ReadResponse (its method: HEAD has no body)
}

// rawEligible reports whether p can go through the raw client.
func rawEligible(p *Prepared) bool {
	u, err := url.Parse(p.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return false
	}
	req, err := p.NewRequest(context.Background())
	if err != nil {
		return false
	}
	proxy, err := http.ProxyFromEnvironment(req)
	return err == nil && proxy == nil
}

func newRawRequest(p *Prepared) (*rawRequest, error) {
	req, err := p.NewRequest(context.Background())
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := req.Write(&b); err != nil {
		return nil, fmt.Errorf("serialise %s: %w", p.Label(), err)
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	tmpl := &http.Request{Method: req.Method, URL: req.URL, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}}
	return &rawRequest{addr: addr, wire: b.Bytes(), req: tmpl}, nil
}

func newRawClient(hard context.Context) *rawClient {
	return &rawClient{idle: map[string][]*rawConn{}, hard: hard, dialer: net.Dialer{KeepAlive: 30 * time.Second}}
}

func (c *rawClient) get(ctx context.Context, addr string, fresh bool) (*rawConn, error) {
	c.mu.Lock()
	if l := c.idle[addr]; len(l) > 0 && !fresh {
		rc := l[len(l)-1]
		c.idle[addr] = l[:len(l)-1]
		c.mu.Unlock()
		rc.reused = true
		return rc, nil
	}
	c.mu.Unlock()
	nc, err := c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	rc := &rawConn{c: nc, br: bufio.NewReaderSize(nc, 16<<10)}
	// The hard stop cuts the connection whatever it is doing.
	rc.stop = context.AfterFunc(c.hard, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	return rc, nil
}

func (c *rawClient) put(addr string, rc *rawConn) {
	c.mu.Lock()
	if !c.closed {
		c.idle[addr] = append(c.idle[addr], rc)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	rc.close()
}

func (rc *rawConn) close() {
	rc.stop()
	_ = rc.c.Close()
}

// closeIdle closes every idle connection and any put back later.
func (c *rawClient) closeIdle() {
	c.mu.Lock()
	c.closed = true
	idle := c.idle
	c.idle = map[string][]*rawConn{}
	c.mu.Unlock()
	for _, l := range idle {
		for _, rc := range l {
			rc.close()
		}
	}
}

// do sends r and reads its answer to the end within timeout, returning the
// status. A kept-alive connection the server had closed is retried once on
// a new one (not another idle one, which may be as stale), as net/http does.
func (c *rawClient) do(r *rawRequest, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithDeadline(c.hard, deadline)
		rc, err := c.get(ctx, r.addr, attempt > 0) // a retry dials
		cancel()
		if err != nil {
			return 0, err
		}
		status, keep, err := rc.roundTrip(r, deadline)
		if err == nil {
			if keep {
				c.put(r.addr, rc)
			} else {
				rc.close()
			}
			return status, nil
		}
		rc.close()
		if !(rc.reused && attempt == 0 && status == 0 && retryable(err)) {
			return status, err
		}
	}
}

func retryable(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (rc *rawConn) roundTrip(r *rawRequest, deadline time.Time) (status int, keep bool, err error) {
	if err := rc.c.SetDeadline(deadline); err != nil {
		return 0, false, err
	}
	if _, err := rc.c.Write(r.wire); err != nil {
		return 0, false, err
	}
	resp, err := http.ReadResponse(rc.br, r.req)
	if err != nil {
		return 0, false, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return resp.StatusCode, false, err
	}
	return resp.StatusCode, !resp.Close, nil
}
