package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/api"
)

const goodToken = "viewer-token-1"

// keyring accepts goodToken only.
func keyring(token string) (string, bool) {
	if token == goodToken {
		return "alice", true
	}
	return "", false
}

// call is one request: its Host header, Authorization header and token
// cookie (each left out when empty).
type call struct {
	method, path      string
	host, auth, token string
	form              url.Values // POST body
}

// answer is a response with its body (an SSE stream: headers only).
type answer struct {
	code   int
	header http.Header
	body   string
}

func (a answer) errorText(t *testing.T) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d answer is %q, want JSON: %s", a.code, a.header.Get("Content-Type"), a.body)
	}
	if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.Error == "" {
		t.Fatalf("%d answer without an error: %v %s", a.code, err, a.body)
	}
	return e.Error
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (f *fixture) do(t *testing.T, c call) answer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var body io.Reader
	if c.form != nil {
		body = strings.NewReader(c.form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, cmpOr(c.method, http.MethodGet), f.srv.URL+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if c.form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.host != "" {
		req.Host = c.host
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	if c.token != "" {
		req.AddCookie(&http.Cookie{Name: api.TokenCookie, Value: c.token})
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{code: resp.StatusCode, header: resp.Header}
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		return a // a stream: its headers are what is asked about
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a.body = string(b)
	return a
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func TestIsLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:9464", true},
		{"127.0.0.1:0", true},
		{"127.1.2.3:80", true},
		{"[::1]:9464", true},
		{"::1", true},
		{"127.0.0.1", true},
		{"localhost:9464", true},
		{"LocalHost:9464", true},
		{"localhost", true},
		{"[::ffff:127.0.0.1]:80", true},
		{":9464", false},
		{"", false},
		{"0.0.0.0:9464", false},
		{"[::]:9464", false},
		{"10.0.0.5:9464", false},
		{"128.0.0.1:80", false},
		{"[2001:db8::1]:80", false},
		{"runbook.example.com:80", false},
		{"localhost.example.com:80", false},
	} {
		if got := api.IsLoopback(tc.addr); got != tc.want {
			t.Errorf("IsLoopback(%q) = %t, want %t", tc.addr, got, tc.want)
		}
	}
}

// Beyond loopback every route wants an accepted token: the API, the
// stream, the dashboard and its assets.
func TestTokenRequiredBeyondLoopback(t *testing.T) {
	f := newFixtureWith(t, reporter.NewMemory(), api.Options{ListenAddr: "0.0.0.0:9464", RequireToken: true, Authorize: keyring}, fourRuns()...)
	paths := []string{"/api/v1/runs", "/api/v1/runs/run-a", "/api/v1/runs/run-a/events", "/api/v1/runs/run-a/report",
		"/api/v1/runs/run-a/summary", "/api/v1/runs/run-a/metrics", "/api/v1/stream", "/", "/app.js", "/style.css"}
	for _, tc := range []struct {
		name        string
		auth, token string
		want        int
		why         string // in the 401's error
		clears      bool   // the 401 removes the cookie
	}{
		{name: "no token", want: 401, why: "a viewer token is required"},
		{name: "wrong bearer", auth: "Bearer nope", want: 401, why: "bearer token in the Authorization header is not accepted"},
		{name: "empty bearer", auth: "Bearer ", want: 401, why: `not "Bearer <token>"`},
		{name: "basic auth", auth: "Basic " + goodToken, want: 401, why: `not "Bearer <token>"`},
		{name: "wrong cookie", token: "nope", want: 401, why: "cookie holds a token this server does not accept", clears: true},
		{name: "wrong bearer, good cookie", auth: "Bearer nope", token: goodToken, want: 401, why: "Authorization header is not accepted"},
		{name: "good bearer", auth: "Bearer " + goodToken, want: 200},
		{name: "good bearer, scheme in lower case", auth: "bearer " + goodToken, want: 200},
		{name: "good cookie", token: goodToken, want: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, p := range paths {
				a := f.do(t, call{path: p, auth: tc.auth, token: tc.token})
				if a.code != tc.want {
					t.Fatalf("GET %s: %d %s, want %d", p, a.code, a.body, tc.want)
				}
				if tc.want != 401 {
					continue
				}
				if got := a.header.Get("WWW-Authenticate"); got != `Bearer realm="runbook"` {
					t.Errorf("GET %s: WWW-Authenticate %q", p, got)
				}
				if e := a.errorText(t); !strings.Contains(e, tc.why) {
					t.Errorf("GET %s: error %q, want ~%q", p, e, tc.why)
				}
				cleared := false
				for _, c := range (&http.Response{Header: a.header}).Cookies() {
					cleared = cleared || (c.Name == api.TokenCookie && c.MaxAge < 0)
				}
				if cleared != tc.clears {
					t.Errorf("GET %s: cookie cleared %t, want %t (Set-Cookie %q)", p, cleared, tc.clears, a.header.Values("Set-Cookie"))
				}
			}
		})
	}
	// An unknown endpoint is 404 for a token holder only.
	if a := f.do(t, call{path: "/api/v1/nothing"}); a.code != 401 {
		t.Errorf("unknown endpoint without a token: %d", a.code)
	}
	if a := f.do(t, call{path: "/api/v1/nothing", auth: "Bearer " + goodToken}); a.code != 404 {
		t.Errorf("unknown endpoint with a token: %d", a.code)
	}
}

// Without a keyring nothing is accepted, and the 401 says why.
func TestNoKeyringAcceptsNoToken(t *testing.T) {
	f := newFixtureWith(t, reporter.NewMemory(), api.Options{ListenAddr: "10.0.0.5:9464", RequireToken: true}, fourRuns()...)
	for _, c := range []call{{path: "/api/v1/runs"}, {path: "/api/v1/runs", auth: "Bearer " + goodToken}, {path: "/login?token=" + goodToken}} {
		a := f.do(t, c)
		if a.code != 401 || !strings.Contains(a.errorText(t), "no viewer tokens configured") {
			t.Errorf("%+v: %d %s, want 401 naming the missing keyring", c, a.code, a.body)
		}
	}
}

// On loopback a request without a token is served; a token that is not
// accepted is still refused.
func TestLoopbackNeedsNoToken(t *testing.T) {
	f := newFixtureWith(t, reporter.NewMemory(), api.Options{ListenAddr: "127.0.0.1:9464", Authorize: keyring}, fourRuns()...)
	for _, tc := range []struct {
		c    call
		want int
	}{
		{call{path: "/api/v1/runs"}, 200},
		{call{path: "/"}, 200},
		{call{path: "/api/v1/stream"}, 200},
		{call{path: "/api/v1/runs", auth: "Bearer " + goodToken}, 200},
		{call{path: "/api/v1/runs", auth: "Bearer nope"}, 401},
		{call{path: "/api/v1/runs", token: "nope"}, 401},
	} {
		if a := f.do(t, tc.c); a.code != tc.want {
			t.Errorf("%+v: %d %s, want %d", tc.c, a.code, a.body, tc.want)
		}
	}
}

// A browser logs in once; the cookie then carries the token, the live
// stream's included.
func TestCookieLogin(t *testing.T) {
	f := newFixtureWith(t, reporter.NewMemory(), api.Options{ListenAddr: "0.0.0.0:9464", RequireToken: true, Authorize: keyring}, fourRuns()...)

	for _, tc := range []struct {
		name   string
		c      call
		want   int
		cookie bool   // sets the token cookie
		in     string // in the body
	}{
		{"GET with a good token", call{path: "/login?token=" + goodToken}, 303, true, ""},
		{"POST with a good token", call{method: "POST", path: "/login", form: url.Values{"token": {goodToken}}}, 303, true, ""},
		{"GET with a wrong token", call{path: "/login?token=nope"}, 401, false, "not accepted"},
		{"POST with a wrong token", call{method: "POST", path: "/login", form: url.Values{"token": {"nope"}}}, 401, false, "not accepted"},
		{"POST without a token", call{method: "POST", path: "/login", form: url.Values{}}, 400, false, "no token"},
		{"GET without a token: the form", call{path: "/login"}, 200, false, `<form method="post" action="/login">`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := f.do(t, tc.c)
			if a.code != tc.want || !strings.Contains(a.body, tc.in) {
				t.Fatalf("%d %s, want %d with %q", a.code, a.body, tc.want, tc.in)
			}
			var got *http.Cookie
			for _, c := range (&http.Response{Header: a.header}).Cookies() {
				if c.Name == api.TokenCookie {
					got = c
				}
			}
			if !tc.cookie {
				if got != nil {
					t.Fatalf("cookie %v set", got)
				}
				return
			}
			if got == nil || got.Value != goodToken || !got.HttpOnly || got.SameSite != http.SameSiteStrictMode || got.Path != "/" {
				t.Errorf("cookie %v, want %s=%s; Path=/; HttpOnly; SameSite=Strict", got, api.TokenCookie, goodToken)
			}
			if loc := a.header.Get("Location"); loc != "/" {
				t.Errorf("redirect to %q, want /", loc)
			}
		})
	}

	// As a browser does it: log in, land on the dashboard, open the stream.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.Get(f.srv.URL + "/login?token=" + url.QueryEscape(goodToken))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/" || !strings.Contains(string(page), `<script src="app.js">`) {
		t.Fatalf("after login: %d at %s: %.200s", resp.StatusCode, resp.Request.URL, page)
	}
	for _, p := range []string{"/app.js", "/api/v1/runs"} {
		resp, err := browser.Get(f.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s with the login cookie: %d", p, resp.StatusCode)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/api/v1/stream", nil)
	resp, err = browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("stream with the login cookie: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// The Host header must name this server: a page of another site whose
// name was re-pointed at it (DNS rebinding) gets nothing.
func TestHostAllowList(t *testing.T) {
	for _, cfg := range []struct {
		name   string
		o      api.Options
		allow  []string
		refuse map[string]string // host: in the error
	}{
		{
			name:  "wildcard listen, no allowed hosts",
			o:     api.Options{ListenAddr: "0.0.0.0:9464"},
			allow: []string{"localhost:9464", "localhost", "LOCALHOST:1", "127.0.0.1:9464", "127.0.0.1", "[::1]:9464", "[::1]"},
			refuse: map[string]string{
				"evil.example":      `listens on every interface (0.0.0.0:9464) and has no allowed hosts, so it answers only to loopback names`,
				"10.0.0.5:9464":     `add "10.0.0.5" to its allowed hosts`,
				"0.0.0.0:9464":      `Host "0.0.0.0:9464" is not allowed`,
				"localhost.evil.io": `add "localhost.evil.io"`,
				"127.0.0.2:9464":    `Host "127.0.0.2:9464"`,
			},
		},
		{
			name:  "listen address unknown",
			o:     api.Options{},
			allow: []string{"localhost:1", "127.0.0.1:2"},
			refuse: map[string]string{
				"evil.example:80": `has no allowed hosts, so it answers only to loopback names`,
			},
		},
		{
			name: "listen host and allowed hosts",
			o: api.Options{ListenAddr: "10.0.0.5:9464", RequireToken: true, Authorize: keyring, AllowedHostsFlag: "--http-allowed-host",
				AllowedHosts: []string{"runbook.example.com", "proxy.example:8443", "[2001:db8::1]:8443"}},
			allow: []string{"10.0.0.5:9464", "10.0.0.5", "localhost:9464", "runbook.example.com", "runbook.example.com:1234",
				"Runbook.Example.COM.:80", "proxy.example:8443", "[2001:db8::1]:8443"},
			refuse: map[string]string{
				"evil.example":                 `answers only to localhost, 127.0.0.1, [::1], 10.0.0.5 (its listen address), runbook.example.com, proxy.example:8443, [2001:db8::1]:8443 (its allowed hosts)`,
				"proxy.example:9999":           `to reach it as "proxy.example:9999", add "proxy.example" to its allowed hosts (--http-allowed-host)`,
				"proxy.example":                `Host "proxy.example"`,
				"[2001:db8::1]:80":             `Host "[2001:db8::1]:80"`,
				"runbook.example.com.evil.net": `Host "runbook.example.com.evil.net"`,
				"10.0.0.6:9464":                `Host "10.0.0.6:9464"`,
			},
		},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			f := newFixtureWith(t, reporter.NewMemory(), cfg.o, fourRuns()...)
			auth := ""
			if cfg.o.RequireToken {
				auth = "Bearer " + goodToken
			}
			for _, h := range cfg.allow {
				for _, p := range []string{"/api/v1/runs", "/"} {
					if a := f.do(t, call{path: p, host: h, auth: auth}); a.code != 200 {
						t.Errorf("Host %s GET %s: %d %s, want 200", h, p, a.code, a.body)
					}
				}
			}
			for h, why := range cfg.refuse {
				// Refused before the token is looked at: with or without one.
				for _, p := range []call{{path: "/api/v1/runs", host: h, auth: auth}, {path: "/", host: h}, {path: "/api/v1/stream", host: h}, {path: "/login?token=" + goodToken, host: h}} {
					a := f.do(t, p)
					if a.code != http.StatusMisdirectedRequest {
						t.Errorf("Host %s GET %s: %d %s, want 421", h, p.path, a.code, a.body)
						continue
					}
					if e := a.errorText(t); !strings.Contains(e, why) || !strings.Contains(e, "DNS rebinding") {
						t.Errorf("Host %s: error %q, want ~%q", h, e, why)
					}
					if len(a.header.Values("Set-Cookie")) != 0 {
						t.Errorf("Host %s: a refused login set a cookie", h)
					}
				}
			}
		})
	}
}

// Every response carries the CSP and the other protective headers: API
// answers, errors, the stream, the dashboard and the login.
func TestSecurityHeaders(t *testing.T) {
	f := newFixtureWith(t, reporter.NewMemory(), api.Options{ListenAddr: "0.0.0.0:9464", RequireToken: true, Authorize: keyring}, fourRuns()...)
	want := map[string]string{
		"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"X-Frame-Options":         "DENY",
	}
	bearer := "Bearer " + goodToken
	for _, tc := range []struct {
		c    call
		code int
	}{
		{call{path: "/api/v1/runs", auth: bearer}, 200},
		{call{path: "/api/v1/runs/run-a/events", auth: bearer}, 200},
		{call{path: "/api/v1/runs/run-a/summary", auth: bearer}, 200},
		{call{path: "/api/v1/runs/nope", auth: bearer}, 404},
		{call{path: "/api/v1/runs?limit=0", auth: bearer}, 400},
		{call{path: "/api/v1/stream", auth: bearer}, 200},
		{call{path: "/", auth: bearer}, 200},
		{call{path: "/app.js", auth: bearer}, 200},
		{call{path: "/style.css", auth: bearer}, 200},
		{call{path: "/api/v1/runs"}, 401},
		{call{path: "/api/v1/runs", host: "evil.example", auth: bearer}, 421},
		{call{path: "/login"}, 200},
		{call{path: "/login?token=" + goodToken}, 303},
	} {
		a := f.do(t, tc.c)
		if a.code != tc.code {
			t.Errorf("%+v: %d, want %d", tc.c, a.code, tc.code)
		}
		for k, v := range want {
			if got := a.header.Values(k); len(got) != 1 || got[0] != v {
				t.Errorf("%+v: %s %q, want %q", tc.c, k, got, v)
			}
		}
	}
}

// The dashboard keeps to the CSP: no inline script, style or event
// handler, nothing that only 'unsafe-inline' or 'unsafe-eval' would allow.
func TestDashboardFitsTheCSP(t *testing.T) {
	f := newFixture(t)
	get := func(p string) string {
		code, _, body := f.get(t, p)
		if code != 200 {
			t.Fatalf("GET %s: %d", p, code)
		}
		return body
	}
	html := get("/")
	for _, tag := range regexp.MustCompile(`(?is)<script\b[^>]*>`).FindAllString(html, -1) {
		if !regexp.MustCompile(`\ssrc="[^"]+"`).MatchString(tag) {
			t.Errorf("inline script %s", tag)
		}
	}
	if n := strings.Count(html, "<script"); n != 1 || strings.Count(html, "</script>") != 1 || !strings.Contains(html, `<script src="app.js"></script>`) {
		t.Errorf("index.html: %d script tags, want only <script src=\"app.js\"></script>", n)
	}
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)<style\b`),
		regexp.MustCompile(`(?i)\sstyle\s*=`),
		regexp.MustCompile(`(?i)\son[a-z]+\s*=`),
		regexp.MustCompile(`(?i)javascript:`),
		regexp.MustCompile(`(?i)<link\b[^>]*href="(https?:)?//`),
	} {
		if m := bad.FindString(html); m != "" {
			t.Errorf("index.html has %q", m)
		}
	}
	js := get("/app.js")
	for _, bad := range []*regexp.Regexp{
		// A style attribute (el(tag, {style: ...}) or setAttribute("style")).
		regexp.MustCompile(`[{,]\s*"?style"?\s*:`),
		regexp.MustCompile(`setAttribute\(\s*["']style`),
		// An inline event handler attribute.
		regexp.MustCompile(`[{,]\s*"?on[a-z]+"?\s*:`),
		regexp.MustCompile(`setAttribute\(\s*["']on`),
		// HTML parsed from strings can carry inline script or style.
		regexp.MustCompile(`\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write`),
		regexp.MustCompile(`\beval\(|new Function\(|setTimeout\(\s*["'\x60]|setInterval\(\s*["'\x60]`),
		regexp.MustCompile(`javascript:`),
	} {
		if m := bad.FindString(js); m != "" {
			t.Errorf("app.js has %q", m)
		}
	}
	// The legend's colours live in the stylesheet now.
	if css := get("/style.css"); !strings.Contains(css, ".legend .s0") || !strings.Contains(css, ".legend .viol") || !strings.Contains(css, "h2.flush") {
		t.Error("style.css lacks the legend and heading classes app.js uses")
	}
}

// The plan text is for token holders; without a token its place reads
// PlanWithheld and the event keeps its shape.
func TestPlanYAMLWithheldWithoutAToken(t *testing.T) {
	for _, cfg := range []struct {
		name  string
		o     api.Options
		calls []call
		plan  []string // want planYaml, by call
	}{
		{
			name: "loopback",
			o:    api.Options{ListenAddr: "127.0.0.1:9464", Authorize: keyring},
			calls: []call{
				{path: "/api/v1/runs/run-a/events"},
				{path: "/api/v1/runs/run-a/events", auth: "Bearer " + goodToken},
				{path: "/api/v1/runs/run-a/events", token: goodToken},
				{path: "/api/v1/runs/run-a/events?limit=1"},
			},
			plan: []string{api.PlanWithheld, planYAML, planYAML, api.PlanWithheld},
		},
		{
			name:  "loopback, no keyring",
			o:     api.Options{ListenAddr: "127.0.0.1:9464"},
			calls: []call{{path: "/api/v1/runs/run-a/events"}},
			plan:  []string{api.PlanWithheld},
		},
		{
			name:  "beyond loopback",
			o:     api.Options{ListenAddr: "0.0.0.0:9464", RequireToken: true, Authorize: keyring},
			calls: []call{{path: "/api/v1/runs/run-a/events", auth: "Bearer " + goodToken}, {path: "/api/v1/runs/run-a/events", token: goodToken}},
			plan:  []string{planYAML, planYAML},
		},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			onEachModelWith(t, cfg.o, fourRuns(), func(t *testing.T, f *fixture) {
				for i, c := range cfg.calls {
					a := f.do(t, c)
					if a.code != 200 {
						t.Fatalf("%+v: %d %s", c, a.code, a.body)
					}
					var page struct {
						Events []struct {
							Event map[string]json.RawMessage `json:"event"`
						} `json:"events"`
					}
					if err := json.Unmarshal([]byte(a.body), &page); err != nil {
						t.Fatal(err)
					}
					var cr map[string]any
					if err := json.Unmarshal(page.Events[0].Event["changeRequested"], &cr); err != nil {
						t.Fatalf("%+v: first event %s", c, a.body)
					}
					if cr["planYaml"] != cfg.plan[i] {
						t.Errorf("%+v: planYaml %q, want %q", c, cr["planYaml"], cfg.plan[i])
					}
					// The rest of the event is as stored.
					if cr["changeId"] != "CR-1" || cr["planSource"] != "plan.yaml" || cr["title"] != "upgrade run-a" {
						t.Errorf("%+v: change.requested %v", c, cr)
					}
				}
			})
		})
	}
}

// onEachModelWith is onEachModel with options.
func onEachModelWith(t *testing.T, o api.Options, runs []*history, fn func(t *testing.T, f *fixture)) {
	for _, m := range models {
		t.Run(m.name, func(t *testing.T) { fn(t, newFixtureWith(t, m.open(t), o, runs...)) })
	}
}
