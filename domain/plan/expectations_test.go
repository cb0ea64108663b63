package plan

import (
	"reflect"
	"strings"
	"testing"
)

// Health checks, wait.until and http steps read the smoke tests' expect
// block; expect_status still gives the status when expect.status is not
// written.
func TestResponseExpectations(t *testing.T) {
	t.Parallel()
	src := `change_request: {id: CR-1, title: health, type: maintenance, priority: low}
deploy:
  steps:
    - http:
        url: "http://a.internal/switch"
        expect_status: 202
        expect: {json: {switched: true}}
    - wait:
        until:
          url: "http://a.internal/health"
          expect: {status: 200, body_contains: [new], headers: {X-Release: v2}}
  health:
    - url: "http://a.internal/health"
      expect:
        json: {$.release: new}
        json_match: {version: '^2\.'}
        json_absent: [error]
        headers_match: {Content-Type: '^application/json'}
        max_ms: 500
    - url: "http://a.internal/ready"
`
	p, issues := Parse("health.yaml", []byte(src))
	if p == nil {
		t.Fatalf("plan refused: %v", issues)
	}
	h := p.Deploy.Health[0].Expectation()
	want := Expect{
		JSON: map[string]any{"$.release": "new"}, JSONMatch: map[string]string{"version": `^2\.`},
		JSONAbsent: []string{"error"}, HeadersMatch: map[string]string{"Content-Type": "^application/json"}, MaxMS: 500,
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("health expectation %+v, want %+v", h, want)
	}
	if e := p.Deploy.Health[1].Expectation(); !e.IsZero() {
		t.Errorf("a health check without expect asserts %+v, want nothing beyond 2xx", e)
	}
	if e := p.Deploy.Steps[0].HTTP.Expectation(); e.Status != 202 || e.JSON["switched"] != true {
		t.Errorf("http step expectation %+v, want status 202 (expect_status) and json switched", e)
	}
	if e := p.Deploy.Steps[1].Wait.Until.Expectation(); e.Status != 200 || len(e.BodyContains) != 1 || e.Headers["X-Release"] != "v2" {
		t.Errorf("wait.until expectation %+v", e)
	}
}

func TestJSONPathSegments(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		path string
		want []string
		err  string
	}{
		{"$", nil, ""},
		{"", nil, ""},
		{"release", []string{"release"}, ""},
		{"$.release", []string{"release"}, ""},
		{"data.items[0].id", []string{"data", "items", "0", "id"}, ""},
		{"items.0.id", []string{"items", "0", "id"}, ""},
		{"$[1][2]", []string{"1", "2"}, ""},
		{"$.a b.c-d", []string{"a b", "c-d"}, ""},
		{"$..release", nil, "recursive descent"},
		{"a..b", nil, "an empty key"},
		{".a", nil, "an empty key"},
		{"a.", nil, "an empty key"},
		{"$.", nil, "nothing after $."},
		{"a.[0]", nil, "an empty key"},
		{"items[0", nil, "[ without a closing ]"},
		{"items]0", nil, "] without an opening ["},
		{"items[x]", nil, "brackets take an array index"},
		{"items['a']", nil, "brackets take an array index"},
		{"items[?(@.a)]", nil, "brackets take an array index"},
		{"items[*]", nil, "wildcards"},
		{"items.*", nil, "wildcards"},
		{"items[0]id", nil, "write . before a key"},
	} {
		got, err := JSONPathSegments(c.path)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.path, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want one saying %q", c.path, err, c.err)
		case c.err == "" && !reflect.DeepEqual(got, c.want):
			t.Errorf("%q: %q, want %q", c.path, got, c.want)
		}
	}
	if err := CheckJSONPath(" "); err == nil || !strings.Contains(err.Error(), "a JSON path is required") {
		t.Errorf("blank path: %v", err)
	}
}
