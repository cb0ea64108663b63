package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// TokenCookie is the cookie GET /login sets: the dashboard's EventSource
// cannot send an Authorization header, a cookie it sends by itself.
const TokenCookie = "runbook_token"

// ContentSecurityPolicy is sent with every response. The dashboard has no
// inline script or style (style attributes included), so it needs nothing
// more.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// PlanWithheld replaces a change.requested event's plan_yaml in
// GET /api/v1/runs/{id}/events for a request without an accepted token.
const PlanWithheld = "[plan withheld: present a viewer token]"

// loopbackNames are accepted in the Host header whatever the options say.
var loopbackNames = []string{"localhost", "127.0.0.1", "::1"}

// IsLoopback tells whether a listen address (host:port, or a bare host)
// is reachable from this machine only: its host is in 127.0.0.0/8, is ::1
// or is "localhost". An empty host, 0.0.0.0 and :: listen on every
// interface: not loopback. A host name other than localhost is not either
// (it resolves to whatever DNS says).
func IsLoopback(listenAddr string) bool {
	host := hostOf(listenAddr)
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// hostOf is the host part of host:port, [v6]:port, a bare host or a bare
// [v6], lower case, without brackets or a trailing dot.
func hostOf(addr string) string {
	host, _ := splitHost(addr)
	return host
}

// splitHost splits host:port leniently (the port may be missing).
func splitHost(addr string) (host, port string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		h, p = strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]"), ""
	}
	return strings.TrimSuffix(strings.ToLower(h), "."), p
}

// isWildcard: the host part of a listen address that listens everywhere.
func isWildcard(host string) bool {
	if host == "" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsUnspecified()
}

// hostPolicy is the Host header allow-list (DNS rebinding: a page of
// another site whose name was re-pointed at this address must not read it).
type hostPolicy struct {
	listenAddr string
	listenHost string          // "" when the listen address is a wildcard or unknown
	anyPort    map[string]bool // hosts accepted with any port (or none)
	exact      map[string]bool // host:port accepted as such
	extra      []string        // Options.AllowedHosts as given, for messages
	flag       string          // Options.AllowedHostsFlag
}

func newHostPolicy(listenAddr string, allowed []string, flag string) *hostPolicy {
	p := &hostPolicy{listenAddr: listenAddr, anyPort: map[string]bool{}, exact: map[string]bool{}, flag: flag}
	for _, n := range loopbackNames {
		p.anyPort[n] = true
	}
	if h := hostOf(listenAddr); !isWildcard(h) {
		p.listenHost = h
		p.anyPort[h] = true
	}
	for _, a := range allowed {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		p.extra = append(p.extra, a)
		if h, port := splitHost(a); port != "" {
			p.exact[net.JoinHostPort(h, port)] = true
		} else {
			p.anyPort[h] = true
		}
	}
	return p
}

func (p *hostPolicy) allows(hostHeader string) bool {
	h, port := splitHost(hostHeader)
	if h == "" {
		return false
	}
	return p.anyPort[h] || (port != "" && p.exact[net.JoinHostPort(h, port)])
}

// refusal says why hostHeader is refused and how to allow it.
func (p *hostPolicy) refusal(hostHeader string) string {
	if hostHeader == "" {
		return "the request has no Host header; this server answers only to the names it is configured with (DNS rebinding protection)"
	}
	h, _ := splitHost(hostHeader)
	accepted := "localhost, 127.0.0.1, [::1]"
	if p.listenHost != "" {
		accepted += ", " + p.listenHost + " (its listen address)"
	}
	if len(p.extra) > 0 {
		accepted += ", " + strings.Join(p.extra, ", ") + " (its allowed hosts)"
	}
	var why string
	switch {
	case p.listenHost == "" && len(p.extra) == 0 && p.listenAddr != "":
		why = fmt.Sprintf("this server listens on every interface (%s) and has no allowed hosts, so it answers only to loopback names (%s)", p.listenAddr, accepted)
	case p.listenHost == "" && len(p.extra) == 0:
		why = fmt.Sprintf("this server has no allowed hosts, so it answers only to loopback names (%s)", accepted)
	default:
		why = "this server answers only to " + accepted
	}
	how := "its allowed hosts"
	if p.flag != "" {
		how += " (" + p.flag + ")"
	}
	return fmt.Sprintf("Host %q is not allowed (DNS rebinding protection): %s; to reach it as %q, add %q to %s", hostHeader, why, hostHeader, h, how)
}

// viewerKey is the context key of an accepted token's identity.
type viewerKey struct{}

// viewer returns the identity of the request's accepted token, if any.
func viewer(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(viewerKey{}).(string)
	return id, ok
}

// guard wraps every route: security headers, the Host allow-list, and
// the viewer token.
func (a *API) guard(next http.Handler) http.Handler {
	hosts := newHostPolicy(a.o.ListenAddr, a.o.AllowedHosts, a.o.AllowedHostsFlag)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")

		if !hosts.allows(r.Host) {
			a.log.Debug("read api: host refused", "host", r.Host, "path", r.URL.Path, "remote", r.RemoteAddr)
			writeError(w, http.StatusMisdirectedRequest, apiError{Error: hosts.refusal(r.Host), Parameter: "Host", Value: r.Host})
			return
		}
		if r.URL.Path == "/login" && (r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodPost) {
			next.ServeHTTP(w, r) // checks the token it is given
			return
		}

		token, from, problem := bearer(r)
		if problem != "" {
			a.unauthorized(w, r, problem, false)
			return
		}
		if token != "" {
			id, ok := a.authorize(token)
			if !ok {
				if from == "cookie" {
					a.unauthorized(w, r, "the "+TokenCookie+" cookie holds a token this server does not accept (revoked, or from another server): open /login again", true)
				} else {
					a.unauthorized(w, r, "the bearer token in the Authorization header is not accepted"+a.noTokensKnown(), false)
				}
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), viewerKey{}, id)))
			return
		}
		if a.o.RequireToken {
			a.unauthorized(w, r, "a viewer token is required (this server listens beyond loopback): send the header \"Authorization: Bearer <token>\", or in a browser open /login once"+a.noTokensKnown(), false)
			return
		}
		next.ServeHTTP(w, r) // loopback, anonymous: plans are withheld
	})
}

func (a *API) authorize(token string) (string, bool) {
	if a.o.Authorize == nil {
		return "", false
	}
	return a.o.Authorize(token)
}

func (a *API) noTokensKnown() string {
	if a.o.Authorize == nil {
		return " (and this server has no viewer tokens configured: it accepts none)"
	}
	return ""
}

// bearer finds the request's token: the Authorization header, else the
// cookie. problem is set when an Authorization header is not a bearer
// token.
func bearer(r *http.Request) (token, from, problem string) {
	if v := r.Header.Get("Authorization"); v != "" {
		scheme, tok, _ := strings.Cut(strings.TrimSpace(v), " ")
		tok = strings.TrimSpace(tok)
		if !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return "", "", `the Authorization header is not "Bearer <token>"`
		}
		return tok, "header", ""
	}
	if c, err := r.Cookie(TokenCookie); err == nil && c.Value != "" {
		return c.Value, "cookie", ""
	}
	return "", "", ""
}

// unauthorized answers 401; clearCookie also removes a token cookie that
// is no longer accepted, so a loopback dashboard works again on reload.
func (a *API) unauthorized(w http.ResponseWriter, r *http.Request, msg string, clearCookie bool) {
	a.log.Debug("read api: unauthorized", "path", r.URL.Path, "remote", r.RemoteAddr, "why", msg)
	if clearCookie {
		http.SetCookie(w, tokenCookie(r, "", -1))
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="runbook"`)
	w.Header().Set("Cache-Control", "no-store")
	writeError(w, http.StatusUnauthorized, apiError{Error: msg})
}

func tokenCookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: TokenCookie, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	}
}

// validCookieValue: a token that can be stored in a cookie as it is
// (RFC 6265 cookie-octets; net/http would silently drop the others).
func validCookieValue(v string) bool {
	for i := range len(v) {
		c := v[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}

// loginPage is GET /login without a token: a form that posts one (so it
// is not left in the browser's history). No inline script or style.
const loginPage = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>runbook: sign in</title></head>
<body>
<h1>runbook</h1>
<form method="post" action="/login">
<p><label>Viewer token <input type="password" name="token" autocomplete="off" required autofocus></label>
<button type="submit">Open the dashboard</button></p>
</form>
</body>
</html>
`

// login is GET /login?token=<token> (or POST /login with a token form
// field): the token is checked, stored in the runbook_token cookie, and
// the browser goes to the dashboard. GET /login without a token shows a
// form asking for one.
func (a *API) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	var token string
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			writeError(w, http.StatusBadRequest, apiError{Error: "cannot read the login form: " + err.Error()})
			return
		}
		token = r.PostForm.Get("token")
	} else {
		token = r.URL.Query().Get("token")
	}
	token = strings.TrimSpace(token)
	if token == "" {
		if r.Method == http.MethodPost {
			writeError(w, http.StatusBadRequest, apiError{Error: "the login form has no token", Parameter: "token", Allowed: "a viewer token"})
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(loginPage))
		return
	}
	if _, ok := a.authorize(token); !ok {
		a.unauthorized(w, r, "the token is not accepted"+a.noTokensKnown(), false)
		return
	}
	if !validCookieValue(token) {
		writeError(w, http.StatusBadRequest, apiError{Error: "the token is accepted but has characters a cookie cannot hold: use the header \"Authorization: Bearer <token>\"", Parameter: "token"})
		return
	}
	http.SetCookie(w, tokenCookie(r, token, 0))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// allowsPlan tells whether the request may read plan text.
func allowsPlan(r *http.Request) bool {
	_, ok := viewer(r.Context())
	return ok
}
