package plan

import (
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fillEnvFields sets every *_env field reachable from v (a pointer to a
// struct) to a name of its own — a string field to ENV_<n>, a map field to
// {X-Header-<n>: ENV_<n>} — allocating one element of every slice, map of
// structs and pointer on the way, and returns the names it wrote.
func fillEnvFields(t *testing.T, v reflect.Value, depth int, n *int) []string {
	t.Helper()
	if depth > 12 {
		t.Fatalf("the plan's types nest deeper than expected at %s", v.Type())
	}
	var names []string
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return fillEnvFields(t, v.Elem(), depth+1, n)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Struct && v.Type().Elem().Kind() != reflect.Pointer {
			return nil
		}
		if v.Len() == 0 {
			v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		}
		return fillEnvFields(t, v.Index(0), depth+1, n)
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.Struct {
			return nil
		}
		e := reflect.New(v.Type().Elem()).Elem()
		names = fillEnvFields(t, e, depth+1, n)
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		v.SetMapIndex(reflect.ValueOf("k"), e)
		return names
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			fv := v.Field(i)
			if strings.HasSuffix(tag, "_env") {
				*n++
				name := fmt.Sprintf("%s_%s_%d", strings.ToUpper(v.Type().Name()), strings.ToUpper(f.Name), *n)
				switch {
				case fv.Kind() == reflect.String:
					fv.SetString(name)
				case fv.Kind() == reflect.Map && fv.Type().Elem().Kind() == reflect.String:
					fv.Set(reflect.ValueOf(map[string]string{"X-Header": name}))
				default:
					t.Fatalf("%s.%s (%s) is a *_env field of a kind this test does not fill: teach it", v.Type(), f.Name, fv.Type())
				}
				names = append(names, name)
				continue
			}
			names = append(names, fillEnvFields(t, fv, depth+1, n)...)
		}
	}
	return names
}

// Every *_env field of the plan, wherever it is, and every ${env:NAME} of
// a test request is in SecretEnv: a new *_env field that SecretEnv does not
// list fails here.
func TestSecretEnvListsEveryEnvField(t *testing.T) {
	t.Parallel()
	var p Plan
	var n int
	want := fillEnvFields(t, reflect.ValueOf(&p), 0, &n)
	if len(want) < 12 {
		t.Fatalf("only %d *_env fields found (%v): the walk is broken", len(want), want)
	}
	// ${env:NAME} of smoke steps, suite steps and load requests, in the url,
	// a header, the body and a json string.
	p.Test.Smoke[0].Request.URL = "https://h/${env:IN_URL}"
	p.Test.Smoke[0].Request.Headers = map[string]string{"X-Key": "k=${env:IN_HEADER}"}
	p.Test.Suites[0].Steps[0].Request.Body = "${env:IN_BODY}"
	p.Test.Load.Requests[0].JSON = map[string]any{"a": []any{"${env:IN_JSON}"}}
	want = append(want, "IN_URL", "IN_HEADER", "IN_BODY", "IN_JSON")
	// Not secrets: a captured value, a literal $${, an env check's names,
	// a command's literal env.
	p.Test.Smoke[0].Request.Body = "${token} $${env:LITERAL}"
	p.Preflight.Checks[0].Env = &EnvCheck{Required: []string{"ENVIRONMENT"}}
	p.Deploy.Steps[0].Command = &Command{Argv: []string{"true"}, Env: map[string]string{"PLAIN": "x"}}

	got := p.SecretEnv()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("SecretEnv:\n got %v\nwant %v", got, want)
	}
	if !slices.IsSorted(got) {
		t.Fatalf("not sorted: %v", got)
	}
	if (*Plan)(nil).SecretEnv() != nil {
		t.Fatal("a nil plan names no variable")
	}
}

func TestRequestEnvUses(t *testing.T) {
	t.Parallel()
	r := Request{
		URL:        "https://api.example.com/${env:TENANT}/x?k=${key}",
		Headers:    map[string]string{"X-Api-Key": "${env:API_KEY}", "X-Trace": "${trace}"},
		Body:       "$${env:NOT_A_REF}",
		JSON:       map[string]any{"password": "${env:SMOKE_PASSWORD}", "again": "${env:API_KEY}"},
		HeadersEnv: map[string]string{"Authorization": "TEST_TOKEN"},
	}
	var got []string
	for _, u := range RequestEnvUses(r) {
		got = append(got, u.String())
	}
	want := []string{"${env:TENANT} in url", "${env:API_KEY} in headers.X-Api-Key", "${env:API_KEY} in json.again", "${env:SMOKE_PASSWORD} in json.password", "headers_env.Authorization (TEST_TOKEN)"}
	if !slices.Equal(got, want) {
		t.Fatalf("uses:\n got %q\nwant %q", got, want)
	}
	if env := RequestEnv(r); !slices.Equal(env, []string{"TENANT", "API_KEY", "SMOKE_PASSWORD", "TEST_TOKEN"}) {
		t.Fatalf("RequestEnv %v", env)
	}
	if env := RequestEnv(Request{URL: "http://h/${token}"}); env != nil {
		t.Fatalf("a captured value is no env use: %v", env)
	}
}

func TestSecretHostAllowed(t *testing.T) {
	t.Parallel()
	hosts := []string{"api.example.com", "127.0.0.1:18080", "[::1]:8443", "Auth.Example.com.", "10.0.0.7:80"}
	for _, tt := range []struct {
		url  string
		want bool
	}{
		{"https://api.example.com/login", true},
		{"http://api.example.com:8080/login", true}, // a host alone: any port
		{"https://API.EXAMPLE.COM./x", true},
		{"https://auth.example.com/x", true},
		{"https://evil.api.example.com/x", false}, // a subdomain is another host
		{"https://api.example.com.evil.net/x", false},
		{"https://example.com/x", false},
		{"http://127.0.0.1:18080/api", true},
		{"http://127.0.0.1:18081/api", false}, // host:port: that port only
		{"http://127.0.0.1/api", false},
		{"https://[::1]:8443/x", true},
		{"https://[::1]/x", false},
		{"http://10.0.0.7/x", true}, // http's port is 80
		{"https://10.0.0.7/x", false},
		{"http://user:pw@evil.net@api.example.com/x", true}, // the host is api.example.com
		{"http://evil.net/x#@api.example.com", false},
	} {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := SecretHostAllowed(hosts, u); got != tt.want {
			t.Errorf("%s: allowed %v, want %v", tt.url, got, tt.want)
		}
	}
	u, _ := url.Parse("https://api.example.com/")
	if SecretHostAllowed(nil, u) {
		t.Error("no secret_hosts must allow no host")
	}
}

func TestParseSecretHost(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, host, port, err string }{
		{in: "api.example.com", host: "api.example.com"},
		{in: " API.example.com. ", host: "api.example.com"},
		{in: "api.example.com:8443", host: "api.example.com", port: "8443"},
		{in: "[::1]:443", host: "::1", port: "443"},
		{in: "[::1]", host: "::1"},
		{in: "::1", host: "::1"},
		{in: "https://api.example.com", err: "it has a scheme"},
		{in: "api.example.com/login", err: "it has a path"},
		{in: "user@api.example.com", err: "it has a user"},
		{in: "*.example.com", err: "a space or a wildcard"},
		{in: "api.example.com:http", err: `its port "http" is not a number`},
		{in: "api.example.com:0", err: `its port "0" is not a number`},
		{in: "", err: "empty"},
	} {
		h, p, err := ParseSecretHost(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "host:port")):
			t.Errorf("%q: error %v, want one saying %q and how to write it", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || h != tt.host || p != tt.port):
			t.Errorf("%q: %q %q %v, want %q %q", tt.in, h, p, err, tt.host, tt.port)
		}
	}
}

// secretPlan is a plan whose test section is test.
func secretPlan(test string) []byte {
	return []byte("change_request: {id: CR-S, title: secrets}\n" + test)
}

// issueAt finds the error at path.
func issueAt(issues []Issue, path string) (Issue, bool) {
	for _, i := range issues {
		if i.Path == path && !i.Warning {
			return i, true
		}
	}
	return Issue{}, false
}

// runbook validate refuses a request that sends ${env:…} to a host the plan
// does not declare — with the field's path and line, and how to declare it
// — and accepts the same request once the host is declared.
func TestValidateRefusesSecretsToUndeclaredHosts(t *testing.T) {
	t.Parallel()
	const smoke = `test:
  smoke:
    - name: login
      request:
        method: POST
        url: "http://collector.example.net:9999/login"
        json: {email: a@b.c, password: "${env:SMOKE_PASSWORD}"}
`
	_, issues := Parse("p.yaml", secretPlan(smoke))
	is, ok := issueAt(issues, "test.smoke[0].request.url")
	if !ok {
		t.Fatalf("no error at test.smoke[0].request.url: %v", issues)
	}
	if is.Line != 7 {
		t.Errorf("line %d, want 7 (the url's)", is.Line)
	}
	for _, want := range []string{"${env:SMOKE_PASSWORD} in json.password", "collector.example.net:9999", `secret_hosts: ["collector.example.net:9999"]`} {
		if !strings.Contains(is.Message, want) {
			t.Errorf("message %q does not say %q", is.Message, want)
		}
	}
	if !HasErrors(issues) {
		t.Fatal("an error must make the plan invalid")
	}

	// Declared (host alone or host:port): valid.
	for _, decl := range []string{"[collector.example.net]", `["collector.example.net:9999"]`} {
		p, issues := Parse("p.yaml", secretPlan(strings.Replace(smoke, "test:\n", "test:\n  secret_hosts: "+decl+"\n", 1)))
		if HasErrors(issues) || p == nil {
			t.Fatalf("secret_hosts: %s: %v", decl, issues)
		}
		if len(p.Test.SecretHosts) != 1 {
			t.Fatalf("secret_hosts not read: %v", p.Test.SecretHosts)
		}
	}

	// Another host declared: the message lists what is declared.
	_, issues = Parse("p.yaml", secretPlan(strings.Replace(smoke, "test:\n", "test:\n  secret_hosts: [api.example.com]\n", 1)))
	if is, ok := issueAt(issues, "test.smoke[0].request.url"); !ok || !strings.Contains(is.Message, `add "collector.example.net:9999" to test.secret_hosts (now api.example.com)`) {
		t.Fatalf("issue %+v %v", is, ok)
	}

	// A request without environment values goes anywhere.
	_, issues = Parse("p.yaml", secretPlan(`test:
  smoke:
    - {name: health, request: {url: "http://anywhere.example.org/health", headers: {Authorization: "Bearer ${token}"}}}
    - {name: first, request: {url: "http://anywhere.example.org/login"}, capture: {token: token}}
`))
	if _, ok := issueAt(issues, "test.smoke[0].request.url"); ok {
		t.Fatalf("a request without ${env:} was refused: %v", issues)
	}
}

func TestValidateSecretHostsEverywhere(t *testing.T) {
	t.Parallel()
	_, issues := Parse("p.yaml", secretPlan(`test:
  secret_hosts: [api.example.com, "https://api.example.com"]
  suites:
    - name: s
      steps:
        - name: login
          request: {url: "https://api.example.com/login", headers: {X-Key: "${env:API_KEY}"}}
          capture: {next: next}
        - name: follow
          request: {url: "https://${next}/me", body: "${env:API_KEY}"}
        - name: other
          request: {url: "https://other.example.com/", headers_env: {Authorization: TOKEN}}
  load:
    requests:
      - {url: "https://api.example.com/x", headers_env: {Authorization: TOKEN}}
      - {url: "http://metrics.example.org:8080/push", headers_env: {Authorization: TOKEN}}
`))
	for path, want := range map[string]string{
		"test.secret_hosts[1]":                  `"https://api.example.com" is not a host, it has a scheme: write the host (api.example.com)`,
		"test.suites[0].steps[1].request.url":   "to a host taken from ${…}: write the host in the url itself",
		"test.suites[0].steps[2].request.url":   "headers_env.Authorization (TOKEN)) to other.example.com",
		"test.load.requests[1].url":             "to metrics.example.org:8080",
		"test.suites[0].steps[0].request.url/0": "",
		"test.load.requests[0].url/0":           "",
	} {
		p, absent := strings.CutSuffix(path, "/0")
		is, ok := issueAt(issues, p)
		switch {
		case absent && ok:
			t.Errorf("%s: unexpected error %q", p, is.Message)
		case !absent && (!ok || !strings.Contains(is.Message, want)):
			t.Errorf("%s: %q, want it to say %q (all: %v)", p, is.Message, want, issues)
		case !absent && is.Line == 0:
			t.Errorf("%s: no line", p)
		}
	}
}
