package estimator_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kis-core/runbook/examples/estimator"
)

func doAuth(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// The seed's critical path: log in, take the token, use it.
func TestLoginTokenIsNeededAndUsed(t *testing.T) {
	t.Parallel()
	_, ts := start(t, t.TempDir())
	login := `{"email":"` + estimator.DemoEmail + `","password":"` + estimator.DemoPassword + `"}`

	for _, c := range []struct{ body string }{
		{`{"email":"test@company.com","password":"wrong"}`},
		{`{"email":"someone@company.com","password":"test123"}`},
	} {
		if code, b := doAuth(t, "POST", ts.URL+"/api/v1/auth/login", "", c.body); code != 401 {
			t.Errorf("login %s = %d %s, want 401", c.body, code, b)
		}
	}
	if code, _ := doAuth(t, "POST", ts.URL+"/api/v1/auth/login", "", `{"email":`); code != 400 {
		t.Errorf("login with bad JSON = %d, want 400", code)
	}

	code, b := doAuth(t, "POST", ts.URL+"/api/v1/auth/login", "", login)
	var lr estimator.LoginResponse
	if err := json.Unmarshal(b, &lr); err != nil || code != 200 || lr.Token == "" || lr.TokenType != "Bearer" || lr.User.Email != estimator.DemoEmail {
		t.Fatalf("login = %d %s (%v), want 200 with a bearer token", code, b, err)
	}
	_, b2 := doAuth(t, "POST", ts.URL+"/api/v1/auth/login", "", login)
	var lr2 estimator.LoginResponse
	if json.Unmarshal(b2, &lr2) != nil || lr2.Token == lr.Token {
		t.Errorf("two logins gave the same token %q", lr.Token)
	}

	// /api/v1/auth/me needs the token.
	for _, auth := range []string{"", "Bearer nope", lr.Token} {
		if code, b := doAuth(t, "GET", ts.URL+"/api/v1/auth/me", auth, ""); code != 401 {
			t.Errorf("me with Authorization %q = %d %s, want 401", auth, code, b)
		}
	}
	code, b = doAuth(t, "GET", ts.URL+"/api/v1/auth/me", "Bearer "+lr.Token, "")
	if code != 200 || !strings.Contains(string(b), estimator.DemoEmail) {
		t.Errorf("me with the token = %d %s, want 200 naming %s", code, b, estimator.DemoEmail)
	}

	// Estimates: no token is still fine (the load test posts without one);
	// a bad token is refused; a good one is recorded as the creator.
	if code, b := doAuth(t, "POST", ts.URL+"/api/v1/estimate", "", seedBody); code != 201 || strings.Contains(string(b), "createdBy") {
		t.Errorf("estimate without a token = %d %s, want 201 without createdBy", code, b)
	}
	if code, b := doAuth(t, "POST", ts.URL+"/api/v1/estimate", "Bearer nope", seedBody); code != 401 {
		t.Errorf("estimate with a bad token = %d %s, want 401", code, b)
	}
	code, b = doAuth(t, "POST", ts.URL+"/api/v1/estimate", "Bearer "+lr.Token, seedBody)
	var est estimator.Estimate
	if err := json.Unmarshal(b, &est); err != nil || code != 201 || est.CreatedBy != estimator.DemoEmail {
		t.Errorf("estimate with the token = %d %s (%v), want 201 created by %s", code, b, err, estimator.DemoEmail)
	}
}
