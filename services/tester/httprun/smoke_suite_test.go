package httprun

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
)

// authTarget logs in (POST /login → {"token": ...} or, with ?shape=other,
// {"data": {}}) and serves /me only with that token.
func authTarget(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	const token = "tok-0123456789abcdef"
	var meCalls atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Password string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		if body.Password != "pw-from-env" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Session", "sess-42")
		if r.URL.Query().Get("shape") == "other" {
			_, _ = w.Write([]byte(`{"data":{}}`))
			return
		}
		_, _ = w.Write([]byte(`{"token":"` + token + `","user":{"id":7}}`))
	})
	mux.HandleFunc("GET /me/{id}", func(w http.ResponseWriter, r *http.Request) {
		meCalls.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+token || r.Header.Get("X-Session") != "sess-42" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":` + r.PathValue("id") + `,"echo":"` + token + `"}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &meCalls
}

func runSteps(t *testing.T, env map[string]string, steps ...plan.SmokeTest) []CaseResult {
	t.Helper()
	s := &Smoke{Client: &http.Client{}, Env: func(n string) (string, bool) { v, ok := env[n]; return v, ok }, SecretHosts: []string{"127.0.0.1"}}
	var in []plan.SmokeStep
	for _, st := range steps {
		in = append(in, plan.SmokeStep{SmokeTest: st, Suite: "critical_paths"})
	}
	var out []CaseResult
	if err := s.RunSteps(t.Context(), in, func(c CaseResult) { out = append(out, c) }); err != nil {
		t.Fatal(err)
	}
	if len(out) != len(steps) {
		t.Fatalf("%d results for %d steps", len(out), len(steps))
	}
	return out
}

func loginStep(url string) plan.SmokeTest {
	return plan.SmokeTest{
		Name:    "User Authentication",
		Request: plan.Request{Method: "POST", URL: url, JSON: map[string]any{"password": "${env:SMOKE_PASSWORD}"}},
		Expect:  plan.Expect{Status: 200, JSON: map[string]any{"token": "*"}},
		Capture: map[string]any{"token": "$.token", "session": "header:X-Session", "user_id": map[string]any{"json": "user.id", "secret": false}},
	}
}

func meStep(base string) plan.SmokeTest {
	return plan.SmokeTest{
		Name:    "Profile",
		Request: plan.Request{URL: base + "/me/${user_id}", Headers: map[string]string{"Authorization": "Bearer ${token}", "X-Session": "${session}"}},
		Expect:  plan.Expect{Status: 200, JSON: map[string]any{"id": 7, "echo": "*"}},
	}
}

var smokeEnv = map[string]string{"SMOKE_PASSWORD": "pw-from-env"}

func TestSmokeCapturesTokenAndReusesIt(t *testing.T) {
	t.Parallel()
	srv, _ := authTarget(t)
	res := runSteps(t, smokeEnv, loginStep(srv.URL+"/login"), meStep(srv.URL))
	for _, c := range res {
		if !c.Pass || c.Status() != StatusPass || c.Suite != "critical_paths" {
			t.Fatalf("%s: %s %q %q", c.Name, c.Status(), c.Error, c.Details)
		}
	}
	// The token and the password never show in clear; the public user id does.
	all := res[0].Details + res[0].Error + res[1].Details + res[1].Error
	for _, secret := range []string{"tok-0123456789abcdef", "sess-42", "pw-from-env"} {
		if strings.Contains(all, secret) {
			t.Errorf("secret %q in results: %+v", secret, res)
		}
	}
	if !strings.Contains(res[0].Details, "token=[token]") || !strings.Contains(res[0].Details, "captured session, token, user_id") {
		t.Errorf("login details %q: want the token shown as [token] and the captures named", res[0].Details)
	}
	if !strings.Contains(res[1].Details, "echo=[token]") || !strings.Contains(res[1].Details, "id=7") {
		t.Errorf("profile details %q", res[1].Details)
	}
}

func TestSmokeMissingCapturePathFailsAndLaterStepIsSkipped(t *testing.T) {
	t.Parallel()
	srv, meCalls := authTarget(t)
	login := loginStep(srv.URL + "/login?shape=other")
	login.Expect = plan.Expect{Status: 200}
	res := runSteps(t, smokeEnv, login, meStep(srv.URL))
	if res[0].Status() != StatusFail || !strings.Contains(res[0].Error, "capture token: JSON path $.token is missing from the response") {
		t.Errorf("login: %s %q, want a failure naming the capture and its path", res[0].Status(), res[0].Error)
	}
	if res[1].Status() != StatusSkip || res[1].Pass ||
		!strings.Contains(res[1].Error, `skipped: needs ${`) ||
		!strings.Contains(res[1].Error, `step "User Authentication" could not capture it: JSON path`) {
		t.Errorf("profile: %s %q, want skipped naming the step and the path", res[1].Status(), res[1].Error)
	}
	if n := meCalls.Load(); n != 0 {
		t.Errorf("the skipped step was sent %d times", n)
	}
}

func TestSmokeFailedStepSkipsItsDependants(t *testing.T) {
	t.Parallel()
	srv, meCalls := authTarget(t)
	res := runSteps(t, map[string]string{"SMOKE_PASSWORD": "wrong"}, loginStep(srv.URL+"/login"), meStep(srv.URL),
		plan.SmokeTest{Name: "independent", Request: plan.Request{URL: srv.URL + "/me/1"}, Expect: plan.Expect{Status: 401}})
	if res[0].Status() != StatusFail || !strings.Contains(res[0].Error, "HTTP 401 (expected 200)") {
		t.Errorf("login: %s %q", res[0].Status(), res[0].Error)
	}
	if res[1].Status() != StatusSkip || !strings.Contains(res[1].Error, `step "User Authentication" failed: HTTP 401 (expected 200)`) {
		t.Errorf("profile: %s %q", res[1].Status(), res[1].Error)
	}
	if !res[2].Pass {
		t.Errorf("a step needing nothing still runs: %s %q", res[2].Status(), res[2].Error)
	}
	if meCalls.Load() != 1 {
		t.Errorf("/me called %d times, want once (by the independent step)", meCalls.Load())
	}
	if strings.Contains(res[0].Error+res[0].Details, "wrong") {
		t.Errorf("the env password shows in %+v", res[0])
	}
}

func TestSmokeUnsetEnvIsAClearFailure(t *testing.T) {
	t.Parallel()
	srv, _ := authTarget(t)
	res := runSteps(t, nil, loginStep(srv.URL+"/login"), meStep(srv.URL))
	if res[0].Status() != StatusFail || !strings.Contains(res[0].Error, "${env:SMOKE_PASSWORD} has no value") {
		t.Errorf("login: %s %q", res[0].Status(), res[0].Error)
	}
	if res[1].Status() != StatusSkip {
		t.Errorf("profile: %s %q", res[1].Status(), res[1].Error)
	}
}
