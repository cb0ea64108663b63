package httprun

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

// The raw client must read every kind of HTTP/1.1 answer to its end and keep
// the connection only when it may: chunked bodies, Connection: close, HEAD
// (a Content-Length and no body), 204, a large body — all without errors,
// every request reaching the server once.
func TestRawClientAnswers(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/chunked":
			_, _ = io.WriteString(w, "part one,")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "part two")
		case "/close":
			w.Header().Set("Connection", "close")
			_, _ = io.WriteString(w, "bye")
		case "/head":
			w.Header().Set("Content-Length", "1000")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/big":
			_, _ = io.WriteString(w, strings.Repeat("x", 100_000))
		case "/post":
			if b, _ := io.ReadAll(r.Body); string(b) != `{"a":1}` {
				http.Error(w, "bad body "+string(b), http.StatusBadRequest)
			}
		}
	}))
	defer srv.Close()
	var reqs []*Prepared
	for _, r := range []plan.Request{
		{URL: srv.URL + "/chunked"}, {URL: srv.URL + "/close"}, {Method: "HEAD", URL: srv.URL + "/head"},
		{URL: srv.URL + "/empty"}, {URL: srv.URL + "/big"}, {Method: "POST", URL: srv.URL + "/post", JSON: map[string]any{"a": 1}},
	} {
		p, err := Prepare(r, env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if !rawEligible(p) {
			t.Fatalf("%s not sent raw", p.Label())
		}
		reqs = append(reqs, p)
	}
	rep, err := RunLoad(context.Background(), LoadConfig{VUs: 3, Duration: 500 * time.Millisecond, ThinkTime: 0, Requests: reqs}, LoadObserver{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests < 12 || rep.Errors != 0 || hits.Load() != rep.Requests {
		t.Fatalf("requests %d, errors %d %v, server hits %d", rep.Requests, rep.Errors, rep.Stats.ErrorsByKind, hits.Load())
	}
}

// A kept-alive connection the server closed while idle is retried on a new
// one, not counted as an error.
func TestRawClientRetriesAStaleConnection(t *testing.T) {
	t.Parallel()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	srv.Config.IdleTimeout = 5 * time.Millisecond
	srv.Start()
	defer srv.Close()
	rep, err := RunLoad(context.Background(), LoadConfig{VUs: 2, Duration: 400 * time.Millisecond, ThinkTime: 30 * time.Millisecond,
		Requests: []*Prepared{prep(t, srv.URL+"/")}}, LoadObserver{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests < 10 || rep.Errors != 0 {
		t.Fatalf("requests %d, errors %d %v", rep.Requests, rep.Errors, rep.Stats.ErrorsByKind)
	}
}

func TestRawEligible(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]bool{"http://127.0.0.1:1/x": true, "https://127.0.0.1:1/x": false} {
		if got := rawEligible(prep(t, url)); got != want {
			t.Errorf("rawEligible(%s) = %v", url, got)
		}
	}
	r, err := newRawRequest(prep(t, "http://example.test/a?b=c"))
	if err != nil {
		t.Fatal(err)
	}
	if r.addr != "example.test:80" || !strings.HasPrefix(string(r.wire), "GET /a?b=c HTTP/1.1\r\nHost: example.test\r\n") {
		t.Errorf("raw request %s %q", r.addr, r.wire)
	}
}
