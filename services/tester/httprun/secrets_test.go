package httprun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/expect"
	"github.com/kis-core/runbook/domain/plan"
)

// Values in the tester's environment that must reach declared hosts only.
const (
	envPassword = "pw-Zq81-never-elsewhere"
	envAPIKey   = "key-7Hc2-never-elsewhere"
	envToken    = "Bearer tok-Wd55-never-elsewhere"
)

var secretEnv = env(map[string]string{"SMOKE_PASSWORD": envPassword, "API_KEY": envAPIKey, "TOKEN": envToken})

// listener is an HTTP server that records everything it receives.
type listener struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // one dump (method, path, headers, body) per request
}

func newListener(t *testing.T, h http.HandlerFunc) *listener {
	t.Helper()
	l := &listener{}
	l.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var dump strings.Builder
		fmt.Fprintf(&dump, "%s %s\n", r.Method, r.URL)
		for k, v := range r.Header {
			fmt.Fprintf(&dump, "%s: %s\n", k, strings.Join(v, ","))
		}
		dump.Write(b)
		l.mu.Lock()
		l.seen = append(l.seen, dump.String())
		l.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(l.Close)
	return l
}

// received is what the listener got so far.
func (l *listener) received() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.seen...)
}

func (l *listener) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = nil
}

func hostOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func noEnvValue(t *testing.T, what, s string) {
	t.Helper()
	for _, v := range []string{envPassword, envAPIKey, envToken} {
		if strings.Contains(s, v) {
			t.Errorf("%s shows a secret value (%q): %s", what, v, s)
		}
	}
}

// At run time (behind validation) a step whose request carries a value from
// the environment is not sent to a host test.secret_hosts does not list —
// none declared, another port declared, or a host taken from a captured
// value — and the undeclared listener receives nothing. A request without
// environment values still goes there.
func TestSmokeSendsNoEnvValueToAnUndeclaredHost(t *testing.T) {
	t.Parallel()
	undeclared := newListener(t, nil)
	declared := newListener(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"next":%q}`, hostOf(t, undeclared.URL))
	})
	declaredHost := hostOf(t, declared.URL)

	run := func(hosts []string, steps ...plan.SmokeTest) []CaseResult {
		t.Helper()
		s := &Smoke{Client: &http.Client{}, Env: secretEnv, SecretHosts: hosts}
		var in []plan.SmokeStep
		for _, st := range steps {
			in = append(in, plan.SmokeStep{SmokeTest: st})
		}
		var out []CaseResult
		if err := s.RunSteps(t.Context(), in, func(c CaseResult) { out = append(out, c) }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	login := plan.SmokeTest{Name: "login", Request: plan.Request{Method: "POST", URL: undeclared.URL + "/login",
		JSON: map[string]any{"email": "a@b.c", "password": "${env:SMOKE_PASSWORD}"}}}
	byHeader := plan.SmokeTest{Name: "token", Request: plan.Request{URL: undeclared.URL + "/me", HeadersEnv: map[string]string{"Authorization": "TOKEN"}}}
	inURL := plan.SmokeTest{Name: "in url", Request: plan.Request{URL: undeclared.URL + "/x?key=${env:API_KEY}"}}

	for _, tt := range []struct {
		name  string
		hosts []string
		steps []plan.SmokeTest
		want  string
	}{
		{"none declared", nil, []plan.SmokeTest{login, byHeader, inURL}, "the plan declares none"},
		{"another port declared", []string{"127.0.0.1:1", declaredHost}, []plan.SmokeTest{login, byHeader, inURL}, "it lists 127.0.0.1:1"},
		{"host from a captured value", []string{declaredHost}, []plan.SmokeTest{
			{Name: "discover", Request: plan.Request{URL: declared.URL + "/discover"}, Capture: map[string]any{"next": map[string]any{"json": "next", "secret": false}}},
			{Name: "follow", Request: plan.Request{URL: "http://${next}/steal", Headers: map[string]string{"X-Api-Key": "${env:API_KEY}"}}},
		}, ""},
	} {
		res := run(tt.hosts, tt.steps...)
		for _, c := range res {
			if c.Name == "discover" {
				if !c.Pass {
					t.Fatalf("%s: discover: %+v", tt.name, c)
				}
				continue
			}
			if c.Pass || c.Skipped || !strings.HasPrefix(c.Error, "not sent: the request carries the value of ") ||
				!strings.Contains(c.Error, hostOf(t, undeclared.URL)+", which test.secret_hosts does not list") || !strings.Contains(c.Error, tt.want) {
				t.Errorf("%s: %s: %+v, want not sent naming the host", tt.name, c.Name, c)
			}
			noEnvValue(t, tt.name+": "+c.Name, c.Details+c.Error)
		}
	}
	if got := undeclared.received(); len(got) != 0 {
		t.Fatalf("the undeclared listener received %d request(s):\n%s", len(got), strings.Join(got, "\n---\n"))
	}

	// Without environment values the same listener is reached: the refusal
	// above is about the secrets, not the host.
	res := run(nil, plan.SmokeTest{Name: "plain", Request: plan.Request{Method: "POST", URL: undeclared.URL + "/login", JSON: map[string]any{"email": "a@b.c"}}})
	if !res[0].Pass || len(undeclared.received()) != 1 {
		t.Fatalf("a request without environment values: %+v, listener got %d", res[0], len(undeclared.received()))
	}
}

// net/http follows a 307 from the declared host to another with every
// header but Authorization/Cookie (kept too when only the port differs)
// and the body again: the tester's client refuses that redirect for a
// request that carries environment values, so the other host receives
// nothing; a redirect within the declared host, and any redirect of a
// request without environment values, is still followed.
func TestSmokeRedirectCarriesNoEnvValueToAnUndeclaredHost(t *testing.T) {
	t.Parallel()
	undeclared := newListener(t, nil)
	var declared *listener
	declared = newListener(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/login":
			http.Redirect(w, r, undeclared.URL+"/collect", http.StatusTemporaryRedirect)
		case "/hop":
			http.Redirect(w, r, declared.URL+"/final", http.StatusTemporaryRedirect)
		case "/open":
			http.Redirect(w, r, undeclared.URL+"/open", http.StatusFound)
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"ok":true}`)
		}
	})
	req := func(path string) plan.Request {
		return plan.Request{Method: "POST", URL: declared.URL + path,
			Headers:    map[string]string{"X-Api-Key": "${env:API_KEY}"},
			JSON:       map[string]any{"password": "${env:SMOKE_PASSWORD}"},
			HeadersEnv: map[string]string{"Authorization": "TOKEN"}}
	}
	hosts := []string{hostOf(t, declared.URL)}

	// What net/http does on its own (the reason for the guard): the
	// undeclared host gets the body, the custom header and, the hostname
	// being the same, Authorization.
	expanded, err := expect.NewVars(secretEnv).Expand(req("/login"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Prepare(expanded, secretEnv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Send(t.Context(), &http.Client{}, p, 1<<20, true); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(undeclared.received(), "\n")
	for _, v := range []string{envPassword, envAPIKey, envToken} {
		if !strings.Contains(got, v) {
			t.Fatalf("premise: a plain net/http client did not forward %q on a 307 to another port; the guard's reason changed:\n%s", v, got)
		}
	}
	undeclared.reset()
	declared.reset()

	s := &Smoke{Client: &http.Client{}, Env: secretEnv, SecretHosts: hosts}
	var res []CaseResult
	err = s.RunSteps(t.Context(), []plan.SmokeStep{
		{SmokeTest: plan.SmokeTest{Name: "redirected away", Request: req("/login")}},
		{SmokeTest: plan.SmokeTest{Name: "redirected within", Request: req("/hop")}},
		{SmokeTest: plan.SmokeTest{Name: "no secrets", Request: plan.Request{URL: declared.URL + "/open"}}},
	}, func(c CaseResult) { res = append(res, c) })
	if err != nil {
		t.Fatal(err)
	}
	if c := res[0]; c.Pass || !strings.Contains(c.Error, "redirect not followed to "+hostOf(t, undeclared.URL)) ||
		!strings.Contains(c.Error, "carries the value of API_KEY, SMOKE_PASSWORD, TOKEN") {
		t.Errorf("redirected away: %+v, want the redirect refused", c)
	}
	if c := res[1]; !c.Pass {
		t.Errorf("redirected within the declared host: %+v, want it followed", c)
	}
	if c := res[2]; !c.Pass {
		t.Errorf("no secrets: %+v, want the redirect followed", c)
	}
	for _, c := range res {
		noEnvValue(t, c.Name, c.Details+c.Error)
	}
	got = strings.Join(undeclared.received(), "\n")
	if n := len(undeclared.received()); n != 1 || !strings.HasPrefix(got, "GET /open") {
		t.Fatalf("the undeclared host received %d request(s), want only GET /open:\n%s", n, got)
	}
	noEnvValue(t, "the undeclared host's requests", got)
	// The declared host got the secrets, after its own redirect too.
	if d := strings.Join(declared.received(), "\n"); !strings.Contains(d, "POST /final") || !strings.Contains(d, envPassword) {
		t.Fatalf("the declared host's requests:\n%s", d)
	}
}

// A load test's guarded request follows no redirect to an undeclared host
// either (through net/http: a client of its own, or https, or a proxy).
func TestLoadRedirectCarriesNoEnvValueToAnUndeclaredHost(t *testing.T) {
	t.Parallel()
	undeclared := newListener(t, nil)
	declared := newListener(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, undeclared.URL+"/collect", http.StatusTemporaryRedirect)
	})
	p, err := Prepare(plan.Request{Method: "POST", URL: declared.URL + "/x", Body: "k", HeadersEnv: map[string]string{"X-Api-Key": "API_KEY"}}, secretEnv)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Guard([]string{"API_KEY"}, nil); err == nil || !strings.Contains(err.Error(), "not sent") {
		t.Fatalf("Guard with no secret_hosts: %v", err)
	}
	if err := p.Guard([]string{"API_KEY"}, []string{hostOf(t, declared.URL)}); err != nil {
		t.Fatal(err)
	}
	rep, err := RunLoad(t.Context(), LoadConfig{VUs: 1, Duration: 300 * time.Millisecond, ThinkTime: 20 * time.Millisecond,
		Requests: []*Prepared{p}, Client: &http.Client{}}, LoadObserver{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests == 0 || rep.Errors != rep.Requests {
		t.Fatalf("report %+v: every request must fail at the refused redirect", rep)
	}
	if got := undeclared.received(); len(got) != 0 {
		t.Fatalf("the undeclared host received %d request(s):\n%s", len(got), strings.Join(got, "\n---\n"))
	}
	if len(declared.received()) == 0 {
		t.Fatal("the declared host received nothing: the test proved nothing")
	}
}

// GuardRedirects keeps the client's own redirect policy for what it allows.
func TestGuardRedirectsKeepsThePolicy(t *testing.T) {
	t.Parallel()
	stop := errors.New("no redirects here")
	c := GuardRedirects(&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return stop }})
	srv := newListener(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/a" {
			http.Redirect(w, r, "/b", http.StatusFound)
		}
	})
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/a", nil)
	if _, err := c.Do(req); !errors.Is(err, stop) {
		t.Fatalf("err %v, want the client's own policy", err)
	}
	loop := newListener(t, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/again", http.StatusFound) })
	req, _ = http.NewRequestWithContext(context.Background(), http.MethodGet, loop.URL+"/", nil)
	if _, err := GuardRedirects(nil).Do(req); err == nil || !strings.Contains(err.Error(), "stopped after 10 redirects") {
		t.Fatalf("err %v, want net/http's limit", err)
	}
}
