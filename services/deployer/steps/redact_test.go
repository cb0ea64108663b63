package steps

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSecretName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, value string
		want        bool
	}{
		{"API_TOKEN", "x", true},
		{"DB_PASSWORD", "x", true},
		{"LDAP_PASSWD", "x", true},
		{"AWS_SECRET_ACCESS_KEY", "x", true},
		{"GCP_CREDENTIALS", "x", true},
		{"PG_DSN", "x", true},
		{"api_key", "x", true},
		{"DATABASE_URL", "postgres://app:pw@db/app", true},
		{"DATABASE_URL", "postgres://db/app", false},
		{"HOOK_URL", "https://hooks.example.com/x", false},
		{"MODEL_DIR", "/srv/model", false},
		{"REPLICAS", "3", false},
	} {
		if got := SecretName(tc.name, tc.value); got != tc.want {
			t.Errorf("SecretName(%q, %q) = %v, want %v", tc.name, tc.value, got, tc.want)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	const v = `s3<cr>"t/+?~~~`
	r := NewRedactor(map[string]string{"API_TOKEN": v, "SHORT_KEY": "abc", "PIN_KEY": "abcd"})
	for _, tc := range []struct{ in, want string }{
		{"plain " + v + " end", "plain [REDACTED:API_TOKEN] end"},
		{"b64 " + base64.StdEncoding.EncodeToString([]byte(v)), "b64 [REDACTED:API_TOKEN]"},
		{"b64url " + base64.URLEncoding.EncodeToString([]byte(v)), "b64url [REDACTED:API_TOKEN]"},
		{"raw " + base64.RawStdEncoding.EncodeToString([]byte(v)), "raw [REDACTED:API_TOKEN]"},
		{`json {"t":"s3\u003ccr\u003e\"t/+?~~~"}`, `json {"t":"[REDACTED:API_TOKEN]"}`},
		{`json {"t":"s3<cr>\"t/+?~~~"}`, `json {"t":"[REDACTED:API_TOKEN]"}`},
		{"twice " + v + v, "twice [REDACTED:API_TOKEN][REDACTED:API_TOKEN]"},
		// Shorter than MinSecretLen: left alone (it would blank ordinary text).
		{"abc abcd", "abc [REDACTED:PIN_KEY]"},
		{"nothing secret", "nothing secret"},
	} {
		if got := r.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	base := errors.New("boom " + v)
	res := r.RedactResult(Result{OutputTail: v, Err: base})
	if strings.Contains(res.OutputTail+res.Err.Error(), v) || !errors.Is(res.Err, base) {
		t.Errorf("RedactResult: %q / %v (errors.Is %v)", res.OutputTail, res.Err, errors.Is(res.Err, base))
	}
	if !NewRedactor(nil).Empty() || NewRedactor(nil).Redact("x") != "x" {
		t.Error("an empty redactor changes text")
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		attempt int32
		base    string
		want    string
	}{
		{1, "0s", "1s"}, {2, "0s", "2s"}, {3, "0s", "4s"}, {10, "0s", "1m0s"},
		{1, "100ms", "100ms"}, {3, "100ms", "400ms"}, {40, "100ms", "1m0s"},
		{1, "5m", "5m0s"}, {3, "5m", "5m0s"}, // a base above the cap is used as is, never doubled
	} {
		base := mustDur(t, tc.base)
		if got := Backoff(tc.attempt, base).String(); got != tc.want {
			t.Errorf("Backoff(%d, %s) = %s, want %s", tc.attempt, tc.base, got, tc.want)
		}
	}
}

func TestSplitSQL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"CREATE TABLE a (id int); INSERT INTO a VALUES (1);\n", []string{"CREATE TABLE a (id int)", "INSERT INTO a VALUES (1)"}},
		{"SELECT 'a;b'; SELECT \"x;y\" FROM t", []string{"SELECT 'a;b'", `SELECT "x;y" FROM t`}},
		{"SELECT 'it''s;'; SELECT E'\\';'", []string{"SELECT 'it''s;'", `SELECT E'\';'`}},
		{"-- note; here\nSELECT 1; /* a; /* nested; */ b; */ SELECT 2", []string{"-- note; here\nSELECT 1", "/* a; /* nested; */ b; */ SELECT 2"}},
		{"CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql; SELECT $tag$ ; $tag$", []string{"CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql", "SELECT $tag$ ; $tag$"}},
		{"SELECT $1; ;; -- only a comment\n", []string{"SELECT $1"}},
	} {
		got := SplitSQL(tc.in)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("SplitSQL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func mustDur(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
