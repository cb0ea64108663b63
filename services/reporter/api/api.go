// Package api is the reporter's read API and live stream, and the web
// dashboard served next to them:
//
//	GET /api/v1/runs                  runs, newest first (?status= &change_id= &since= &until= &limit= &offset=)
//	GET /api/v1/runs/{id}             one run, dashboard-friendly: timeline, checks, steps, approvals, tests, violations
//	GET /api/v1/runs/{id}/events      the run's events in stream order, protojson with their seq (?after= &limit=)
//	GET /api/v1/runs/{id}/report      the report JSON as published in report.ready
//	GET /api/v1/runs/{id}/summary     the 12-line QC summary, text/plain
//	GET /api/v1/runs/{id}/metrics     the run's metric samples (RUNBOOK_METRICS) and its thresholds
//	GET /api/v1/stream                Server-Sent Events: alert, run, event
//	GET /                             the dashboard (embedded assets, works offline)
//	GET /login?token=                 checks a viewer token, sets the runbook_token cookie, redirects to /
//	GET /api/v1/me                    the token's identity, its role and the actions it may take
//	POST /api/v1/runs/{id}/decisions/prepare   what to sign for approve, reject, cancel, rollback
//	POST /api/v1/runs/{id}/decisions           a decision signed in the browser: verified, then published
//
// It reads the reporter's read model (in memory or PostgreSQL) and the bus;
// the only thing it writes is a person's decision, signed by that person's
// key in their browser and verified here against the keyring (act.go). The live stream has one follower of the audit stream per
// process (Run), fanned out to every SSE client.
//
// # Who may read
//
// A viewer token is presented as "Authorization: Bearer <token>", or, in
// a browser, as the runbook_token cookie (HttpOnly, SameSite=Strict, Secure
// over TLS): EventSource cannot send headers, so GET /login?token=<token>
// (or the form GET /login shows, which posts it) checks the token, sets
// the cookie and redirects to the dashboard. Options.Authorize checks a
// token; the header wins over the cookie. A token that is presented and not
// accepted is always answered 401 (a rejected cookie is also cleared).
//
// Beyond loopback (Options.RequireToken, which the caller sets when
// !IsLoopback(listen address)) every request without an accepted token —
// API, live stream, dashboard page and its assets — is answered 401 with a
// JSON {"error": ...} saying what is missing and
// WWW-Authenticate: Bearer realm="runbook". On loopback a request without
// a token is served, but the plan text is for viewers only: in
// GET /api/v1/runs/{id}/events a change.requested event's planYaml reads
// "[plan withheld: present a viewer token]" (planSha256 stays).
//
// Every request's Host header must name this server (DNS rebinding): its
// listen host (Options.ListenAddr, unless a wildcard such as 0.0.0.0),
// localhost, 127.0.0.1, [::1], with any port, or one of
// Options.AllowedHosts; any other is answered 421 Misdirected Request. A
// server listening on 0.0.0.0 with no AllowedHosts answers to loopback
// names only.
//
// Every response carries Content-Security-Policy (ContentSecurityPolicy:
// same-origin only, no inline script or style, no framing),
// X-Content-Type-Options: nosniff, Referrer-Policy: no-referrer and
// X-Frame-Options: DENY.
package api

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/services/reporter"
)

// Model is what the API reads of the reporter's read model
// (reporter.ReadModel has these methods).
type Model interface {
	Run(ctx context.Context, runID string) (*reporter.Run, error)
	Runs(ctx context.Context, f reporter.RunFilter) ([]reporter.RunSummary, error)
	Events(ctx context.Context, runID string, afterSeq uint64, limit int) ([]eventbus.Envelope, error)
	DeadLetters(ctx context.Context, limit int) ([]eventbus.Envelope, error)
}

// Options of the API.
type Options struct {
	Model Model
	Bus   *eventbus.Bus
	Log   *slog.Logger
	// Heartbeat is how often an idle SSE connection gets a comment line
	// (default 15s), so proxies keep it open and clients notice a dead one.
	Heartbeat time.Duration
	// ClientBuffer is how many messages an SSE client may lag behind
	// before it is dropped (default 256): a slow client never holds up the
	// others.
	ClientBuffer int

	// ListenAddr is the address the server listens on, as given to
	// net.Listen ("127.0.0.1:9464", ":9464", "[::]:80"). Its host is accepted
	// in the Host header, with any port, unless it is a wildcard (empty,
	// 0.0.0.0, ::). Empty: the API does not know it; only loopback names and
	// AllowedHosts are accepted.
	ListenAddr string
	// AllowedHosts are further names accepted in the Host header besides
	// localhost, 127.0.0.1, [::1] and the listen host: the names a proxy or
	// the operators reach the server by. "runbook.example.com" accepts any
	// port; "runbook.example.com:8443" (or "[2001:db8::1]:8443") only that
	// one. Case and a trailing dot do not matter.
	AllowedHosts []string
	// AllowedHostsFlag names, for operators, the setting the caller fills
	// AllowedHosts from (e.g. "--http-allowed-host"); the 421 answer says
	// to add the refused host there. Empty: it says "its allowed hosts".
	AllowedHostsFlag string
	// RequireToken refuses every request without an accepted viewer token
	// (401). The caller sets it when the listener is not loopback:
	// RequireToken: !api.IsLoopback(listenAddr).
	RequireToken bool
	// Authorize checks a bearer token and names its holder. It is called
	// for every request that carries a token (header or cookie) and for
	// /login, concurrently: it must be quick and safe for concurrent use
	// (and compare in constant time). nil: no token is known, every token is
	// refused — with RequireToken, nothing is served.
	Authorize func(token string) (identity string, ok bool)
	// Keyring holds the identities whose decisions the dashboard relays
	// (act.go): the token's identity signs in the browser, and the
	// signature is verified against it. nil (--insecure-no-auth): the
	// dashboard only reads.
	Keyring interface {
		Keyring() (*trust.Keyring, error)
	}
}

func (o *Options) setDefaults() {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = 15 * time.Second
	}
	if o.ClientBuffer <= 0 {
		o.ClientBuffer = 256
	}
}

// API serves the read API, the live stream and the dashboard.
type API struct {
	o   Options
	log *slog.Logger
	hub *hub
}

//go:embed web
var webFS embed.FS

// New builds the API. Run must run for the live stream to carry anything.
func New(o Options) *API {
	o.setDefaults()
	return &API{o: o, log: o.Log, hub: newHub(o)}
}

// Run follows the audit stream from its current end and fans every new
// event out to the SSE clients until ctx ends; then it closes every
// client's stream. It returns nil when ctx ends.
func (a *API) Run(ctx context.Context) error { return a.hub.run(ctx) }

// Handler serves the API and the dashboard, behind the Host allow-list
// and the viewer token (see the package doc).
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", a.login)
	mux.HandleFunc("POST /login", a.login)
	mux.HandleFunc("GET /api/v1/runs", a.listRuns)
	mux.HandleFunc("GET /api/v1/runs/{id}", a.getRun)
	mux.HandleFunc("GET /api/v1/runs/{id}/events", a.getEvents)
	mux.HandleFunc("GET /api/v1/runs/{id}/report", a.getReport)
	mux.HandleFunc("GET /api/v1/runs/{id}/summary", a.getSummary)
	mux.HandleFunc("GET /api/v1/runs/{id}/metrics", a.getMetrics)
	mux.HandleFunc("GET /api/v1/dead-letters", a.listDeadLetters)
	mux.HandleFunc("GET /api/v1/me", a.me)
	mux.HandleFunc("POST /api/v1/runs/{id}/decisions/prepare", a.prepare)
	mux.HandleFunc("POST /api/v1/runs/{id}/decisions", a.act)
	mux.HandleFunc("GET /api/v1/stream", a.hub.serve)
	mux.HandleFunc("GET /api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, apiError{Error: "no such endpoint: " + r.Method + " " + r.URL.Path + " (see GET /api/v1/runs, /api/v1/runs/{id}[/events|/report|/summary|/metrics], /api/v1/dead-letters, /api/v1/stream, /api/v1/me, POST /api/v1/runs/{id}/decisions[/prepare])"})
	})
	sub, _ := fs.Sub(webFS, "web")
	files := http.FileServerFS(sub)
	mux.Handle("GET /", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	return a.guard(mux)
}

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
	// Parameter, Value and Allowed name a bad query or path parameter
	// (Parameter "Host": a Host header that is not allowed).
	Parameter string `json:"parameter,omitempty"`
	Value     string `json:"value,omitempty"`
	Allowed   string `json:"allowed,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, e apiError) {
	writeJSON(w, code, e)
}

// internal answers 500 and logs the cause.
func (a *API) internal(w http.ResponseWriter, r *http.Request, err error) {
	a.log.Error("read api", "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, apiError{Error: err.Error()})
}
