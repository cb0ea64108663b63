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
//
// It reads the reporter's read model (in memory or PostgreSQL) and the bus;
// it never writes. The live stream has one follower of the audit stream per
// process (Run), fanned out to every SSE client.
package api

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/services/reporter"
)

// Model is what the API reads of the reporter's read model
// (reporter.ReadModel has these methods).
type Model interface {
	Run(ctx context.Context, runID string) (*reporter.Run, error)
	Runs(ctx context.Context, f reporter.RunFilter) ([]reporter.RunSummary, error)
	Events(ctx context.Context, runID string, afterSeq uint64, limit int) ([]eventbus.Envelope, error)
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

// Handler serves the API and the dashboard.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/runs", a.listRuns)
	mux.HandleFunc("GET /api/v1/runs/{id}", a.getRun)
	mux.HandleFunc("GET /api/v1/runs/{id}/events", a.getEvents)
	mux.HandleFunc("GET /api/v1/runs/{id}/report", a.getReport)
	mux.HandleFunc("GET /api/v1/runs/{id}/summary", a.getSummary)
	mux.HandleFunc("GET /api/v1/runs/{id}/metrics", a.getMetrics)
	mux.HandleFunc("GET /api/v1/stream", a.hub.serve)
	mux.HandleFunc("GET /api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, apiError{Error: "no such endpoint: " + r.Method + " " + r.URL.Path + " (see GET /api/v1/runs, /api/v1/runs/{id}[/events|/report|/summary|/metrics], /api/v1/stream)"})
	})
	sub, _ := fs.Sub(webFS, "web")
	files := http.FileServerFS(sub)
	mux.Handle("GET /", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	return mux
}

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
	// Parameter, Value and Allowed name a bad query or path parameter.
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
