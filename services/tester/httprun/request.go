// Package httprun sends the HTTP requests of a plan's tests: one smoke test
// at a time, or a closed-model load test of virtual users. The judging is
// done by the pure packages expect and loadstat.
package httprun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

// LookupEnv reads one environment variable, like os.LookupEnv.
type LookupEnv func(name string) (string, bool)

// Prepared is a plan request resolved once (body encoded, secret headers read
// from the environment) and sent any number of times.
type Prepared struct {
	Method string
	URL    string
	Body   []byte
	Header http.Header
	host   string
	// secrets is set by Guard when the request carries values from the
	// environment: no redirect takes it to a host outside secrets.hosts.
	secrets *secretGuard
}

// secretGuard is what a request carrying environment values may reach.
type secretGuard struct {
	env   []string // the variables it carries
	hosts []string // test.secret_hosts
}

type secretGuardKey struct{}

// Guard refuses p when it carries the values of the environment variables
// env (plan.RequestEnv of its request) and its host is not one of hosts
// (test.secret_hosts; plan.SecretHostAllowed). A guarded request sent
// with a client from GuardRedirects follows no redirect to a host outside
// hosts. The error names the variables and the host, never a value.
func (p *Prepared) Guard(env, hosts []string) error {
	if len(env) == 0 {
		return nil
	}
	u, err := url.Parse(p.URL)
	if err != nil {
		return fmt.Errorf("not sent: bad url: %w", err)
	}
	if !plan.SecretHostAllowed(hosts, u) {
		return fmt.Errorf("not sent: the request carries the value of %s from the environment to %s, which test.secret_hosts does not list (%s)",
			strings.Join(env, ", "), u.Host, declared(hosts))
	}
	p.secrets = &secretGuard{env: env, hosts: hosts}
	return nil
}

func declared(hosts []string) string {
	if len(hosts) == 0 {
		return "the plan declares none"
	}
	return "it lists " + strings.Join(hosts, ", ")
}

// ErrRedirectRefused is the error (inside the *url.Error a client returns)
// of a redirect not followed because it would carry values from the
// environment to an undeclared host.
var ErrRedirectRefused = errors.New("redirect not followed")

// maxRedirects is net/http's default limit, kept for guarded clients.
const maxRedirects = 10

// GuardRedirects returns a copy of c (nil: a default client) whose
// redirects follow c's own policy, except that a request Guard marked is
// never redirected to a host outside its secret hosts: net/http would
// send it there again with every header but Authorization and Cookie
// (and, after a 307 or 308, the body), so the redirect is refused and the
// request fails with ErrRedirectRefused before anything reaches that host.
func GuardRedirects(c *http.Client) *http.Client {
	g := http.Client{}
	if c != nil {
		g = *c
	}
	next := g.CheckRedirect
	g.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if sg, ok := req.Context().Value(secretGuardKey{}).(*secretGuard); ok && !plan.SecretHostAllowed(sg.hosts, req.URL) {
			return fmt.Errorf("%w to %s: the request carries the value of %s from the environment, and test.secret_hosts does not list %s (%s)",
				ErrRedirectRefused, req.URL.Host, strings.Join(sg.env, ", "), req.URL.Host, declared(sg.hosts))
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		return nil
	}
	return &g
}

// Prepare resolves r. Header values named by headers_env are read through
// env at this moment; an error names the header and the variable, never a
// value.
func Prepare(r plan.Request, env LookupEnv) (*Prepared, error) {
	p := &Prepared{Method: strings.ToUpper(strings.TrimSpace(r.Method)), URL: r.URL, Header: http.Header{}}
	if p.Method == "" {
		p.Method = http.MethodGet
	}
	if r.URL == "" {
		return nil, fmt.Errorf("request has no url")
	}
	switch {
	case r.JSON != nil:
		b, err := json.Marshal(jsonable(r.JSON))
		if err != nil {
			return nil, fmt.Errorf("encode json body of %s %s: %w", p.Method, r.URL, err)
		}
		p.Body = b
		p.Header.Set("Content-Type", "application/json")
	case r.Body != "":
		p.Body = []byte(r.Body)
	}
	for _, k := range sortedKeys(r.Headers) {
		p.setHeader(k, r.Headers[k])
	}
	for _, k := range sortedKeys(r.HeadersEnv) {
		name := r.HeadersEnv[k]
		v, ok := env(name)
		if !ok {
			return nil, fmt.Errorf("header %s: environment variable %s is not set", k, name)
		}
		p.setHeader(k, v)
	}
	return p, nil
}

func (p *Prepared) setHeader(k, v string) {
	if http.CanonicalHeaderKey(k) == "Host" {
		p.host = v
		return
	}
	p.Header.Set(k, v)
}

// Label names the request in messages: "POST http://host/path".
func (p *Prepared) Label() string { return p.Method + " " + p.URL }

// NewRequest builds a fresh *http.Request for one send.
func (p *Prepared) NewRequest(ctx context.Context) (*http.Request, error) {
	if p.secrets != nil {
		ctx = context.WithValue(ctx, secretGuardKey{}, p.secrets)
	}
	var body io.Reader
	if p.Body != nil {
		body = bytes.NewReader(p.Body)
	}
	req, err := http.NewRequestWithContext(ctx, p.Method, p.URL, body)
	if err != nil {
		return nil, fmt.Errorf("build request %s: %w", p.Label(), err)
	}
	req.Header = p.Header.Clone()
	if p.host != "" {
		req.Host = p.host
	}
	return req, nil
}

// Response is what one send produced.
type Response struct {
	Status int
	Body   []byte // at most the reader's limit
	// Duration runs from sending the request to reading the last byte.
	Duration time.Duration
	// Header is the response's headers (kept when keepBody is true).
	Header http.Header
}

// Send sends p once with client and reads at most maxBody bytes of the
// answer (the rest is drained and discarded so the connection is reused).
// keepBody false discards the body as it is read (load tests).
func Send(ctx context.Context, client *http.Client, p *Prepared, maxBody int64, keepBody bool) (Response, error) {
	req, err := p.NewRequest(ctx)
	if err != nil {
		return Response{}, err
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return Response{Duration: time.Since(start)}, err
	}
	defer resp.Body.Close()
	out := Response{Status: resp.StatusCode}
	if keepBody {
		out.Header = resp.Header
		out.Body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
	}
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	out.Duration = time.Since(start)
	if err != nil {
		return out, fmt.Errorf("read response of %s: %w", p.Label(), err)
	}
	return out, nil
}

// jsonable turns YAML's map[any]any (if a decoder produced one) into
// map[string]any so encoding/json can write it.
func jsonable(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, v := range x {
			m[fmt.Sprint(k)] = jsonable(v)
		}
		return m
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, v := range x {
			m[k] = jsonable(v)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, v := range x {
			s[i] = jsonable(v)
		}
		return s
	}
	return v
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
