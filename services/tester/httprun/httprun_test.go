package httprun

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

const secret = "s3cr3t-token-value"

func env(m map[string]string) LookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestPrepare(t *testing.T) {
	t.Parallel()
	e := env(map[string]string{"API_TOKEN": "Bearer " + secret})
	tests := []struct {
		name    string
		req     plan.Request
		method  string
		body    string
		headers map[string]string
		host    string
		err     string
	}{
		{name: "defaults to GET, no body", req: plan.Request{URL: "http://x/health"}, method: "GET"},
		{name: "json body and content type", req: plan.Request{Method: "post", URL: "http://x/e", JSON: map[string]any{"a": uint64(1), "b": []any{"c"}}},
			method: "POST", body: `{"a":1,"b":["c"]}`, headers: map[string]string{"Content-Type": "application/json"}},
		{name: "yaml map[any]any body", req: plan.Request{URL: "http://x/e", JSON: map[any]any{"k": map[any]any{"n": 2}}},
			method: "GET", body: `{"k":{"n":2}}`},
		{name: "raw body keeps its own content type", req: plan.Request{Method: "PUT", URL: "http://x/e", Body: "a=b", Headers: map[string]string{"content-type": "text/plain"}},
			method: "PUT", body: "a=b", headers: map[string]string{"Content-Type": "text/plain"}},
		{name: "header from env", req: plan.Request{URL: "http://x/", HeadersEnv: map[string]string{"Authorization": "API_TOKEN"}},
			method: "GET", headers: map[string]string{"Authorization": "Bearer " + secret}},
		{name: "host header", req: plan.Request{URL: "http://x/", Headers: map[string]string{"Host": "api.example"}}, method: "GET", host: "api.example"},
		{name: "missing env var names it", req: plan.Request{URL: "http://x/", HeadersEnv: map[string]string{"X-Key": "NOPE"}},
			err: "header X-Key: environment variable NOPE is not set"},
		{name: "no url", req: plan.Request{}, err: "request has no url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Prepare(tt.req, e)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r, err := p.NewRequest(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if r.Method != tt.method {
				t.Errorf("method = %s, want %s", r.Method, tt.method)
			}
			var body string
			if r.Body != nil {
				b, _ := io.ReadAll(r.Body)
				body = string(b)
			}
			if body != tt.body {
				t.Errorf("body = %q, want %q", body, tt.body)
			}
			for k, v := range tt.headers {
				if got := r.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if r.Host != tt.host && tt.host != "" {
				t.Errorf("host = %q, want %q", r.Host, tt.host)
			}
		})
	}
}

func TestPrepareErrorNeverShowsValues(t *testing.T) {
	t.Parallel()
	// Only the missing variable's name may appear; values of the others never.
	_, err := Prepare(plan.Request{URL: "http://x/", HeadersEnv: map[string]string{"A": "SET", "B": "UNSET"}}, env(map[string]string{"SET": secret}))
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("err = %v", err)
	}
}

func target(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			_, _ = io.WriteString(w, `{"status":"ok"}`)
		case "/estimate":
			if r.Header.Get("Authorization") != "Bearer "+secret {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			var in map[string]any
			if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in["customerId"] == nil {
				http.Error(w, "bad body", http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"estimateId":"EST-1"}`)
		case "/slow":
			select {
			case <-time.After(300 * time.Millisecond):
			case <-r.Context().Done():
			}
		case "/fail":
			http.Error(w, "boom", http.StatusInternalServerError)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestSmokeRun(t *testing.T) {
	t.Parallel()
	srv := target(t)
	s := &Smoke{Client: srv.Client(), Env: env(map[string]string{"TOKEN": "Bearer " + secret}), SecretHosts: []string{"127.0.0.1"}}
	tests := []struct {
		name    string
		test    plan.SmokeTest
		pass    bool
		typ     string
		details string // prefix
		err     string // substring
	}{
		{name: "health", test: plan.SmokeTest{Name: "Health", Request: plan.Request{URL: srv.URL + "/health"}, Expect: plan.Expect{Status: 200, MaxMS: 2100, JSON: map[string]any{"status": "ok"}}},
			pass: true, typ: "smoke", details: "HTTP 200, Response time: "},
		{name: "estimate creation", test: plan.SmokeTest{Name: "Estimate Creation", Type: "regression",
			Request: plan.Request{Method: "POST", URL: srv.URL + "/estimate", JSON: map[string]any{"customerId": "c1"}, HeadersEnv: map[string]string{"Authorization": "TOKEN"}},
			Expect:  plan.Expect{Status: 201, JSON: map[string]any{"estimateId": "*"}}},
			pass: true, typ: "regression", details: "HTTP 201, Response time: "},
		{name: "server error", test: plan.SmokeTest{Name: "Fail", Request: plan.Request{URL: srv.URL + "/fail"}},
			typ: "smoke", details: "HTTP 500", err: "HTTP 500 (expected 2xx)"},
		{name: "timeout", test: plan.SmokeTest{Name: "Slow", Request: plan.Request{URL: srv.URL + "/slow"}, Timeout: plan.Duration{Duration: 50 * time.Millisecond}},
			typ: "smoke", details: "GET " + srv.URL + "/slow failed after", err: "no answer within 50ms"},
		{name: "unset env", test: plan.SmokeTest{Name: "NoEnv", Request: plan.Request{URL: srv.URL + "/health", HeadersEnv: map[string]string{"X": "UNSET_VAR"}}},
			typ: "smoke", err: "environment variable UNSET_VAR is not set"},
		{name: "connection refused", test: plan.SmokeTest{Request: plan.Request{URL: "http://127.0.0.1:1/x"}},
			typ: "smoke", err: "connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := s.Run(context.Background(), tt.test)
			if err != nil {
				t.Fatal(err)
			}
			if r.Pass != tt.pass || r.Type != tt.typ || !strings.HasPrefix(r.Details, tt.details) || !strings.Contains(r.Error, tt.err) || (tt.err == "") != (r.Error == "") {
				t.Errorf("result %+v", r)
			}
			if r.Name == "" {
				t.Errorf("no name")
			}
			if strings.Contains(r.Details+r.Error, secret) {
				t.Errorf("secret leaked: %+v", r)
			}
		})
	}
}

func TestSmokeRunInterrupted(t *testing.T) {
	t.Parallel()
	srv := target(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	s := &Smoke{Client: srv.Client(), Env: env(nil)}
	if _, err := s.Run(ctx, plan.SmokeTest{Request: plan.Request{URL: srv.URL + "/slow"}}); err == nil {
		t.Fatal("an interrupted smoke test must return an error, not a FAIL")
	}
}
