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

// Both forms of a JSON path parse to an RFC 9535 query: the short form to
// the query of the same keys and indexes, the $ form by the library, whose
// error (with the position) is what validation reports.
func TestParseJSONPath(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		path  string
		query string // the RFC 9535 query
		err   string
	}{
		{"$", "$", ""},
		{"release", `$["release"]`, ""},
		{"$.release", `$["release"]`, ""},
		{"data.items[0].id", `$["data"]["items"][0,"0"]["id"]`, ""},
		{"items.0.id", `$["items"][0,"0"]["id"]`, ""},
		{"[0].id", `$[0,"0"]["id"]`, ""},
		{"$[1][2]", "$[1][2]", ""},
		{"a b.c-d", `$["a b"]["c-d"]`, ""},
		{`it's."q"`, `$["it's"]["\"q\""]`, ""},
		{"$..release", `$..["release"]`, ""},
		{"$.items[?(@.sku=='A')].price", `$["items"][?(@["sku"] == "A")]["price"]`, ""},
		{"$.items[*]", `$["items"][*]`, ""},
		{"$['a b']", `$["a b"]`, ""},
		{"", "", "a JSON path is required"},
		{" ", "", "a JSON path is required"},
		{"$.items.0.id", "", `JSONPath "$.items.0.id" does not parse: jsonpath: invalid number literal at position 9`},
		{"$.a b", "", "unexpected blank space at position 4; write the short form without $ (a b)"},
		{"$.items[?@.a==]", "", `JSONPath "$.items[?@.a==]" does not parse`},
		{"$..", "", "unexpected eof at position 4"},
		{"a..b", "", "an empty key"},
		{".a", "", "an empty key"},
		{"a.", "", "an empty key"},
		{"a.[0]", "", "an empty key"},
		{"items[0", "", "[ without a closing ]"},
		{"items]0", "", "] without an opening ["},
		{"items[x]", "", "brackets in a short path take an array index"},
		{"items['a']", "", "for quoted keys or filters write JSONPath from $"},
		{"items[?(@.a)]", "", "brackets in a short path take an array index"},
		{"items[*]", "", "[*] selects every element: that is JSONPath"},
		{"items.*", "", "* selects every key: that is JSONPath"},
		{"items[0]id", "", "write . before a key"},
		{"$..a..b", `$..["a"]..["b"]`, ""},
		{"$..a[?@..b]", `$..["a"][?@..["b"]]`, ""},
		{"$..a..b..c", "", `JSONPath "$..a..b..c" has 3 descendant segments (..): at most 2`},
		{"$..a[?@..b && @..c]", "", "has 3 descendant segments"},
		{`$['..']..a[?@.b=='..' || @.c=="x\"..\\.."]`, `$[".."]..["a"][?@["b"] == ".." || @["c"] == "x\"..\\.."]`, ""},
	} {
		p, err := ParseJSONPath(c.path)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.path, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want one saying %q", c.path, err, c.err)
		case c.err == "" && p.Query() != c.query:
			t.Errorf("%q: query %s, want %s", c.path, p.Query(), c.query)
		case c.err == "" && p.String() != c.path:
			t.Errorf("%q: String() = %q", c.path, p.String())
		}
	}
}

// A path with .. searches a document nested at most MaxJSONDepth levels;
// one without reads any.
func TestJSONPathDepth(t *testing.T) {
	t.Parallel()
	nest := func(levels int) any {
		var v any = "leaf"
		for range levels {
			v = []any{v}
		}
		return v
	}
	deep, shallow := nest(MaxJSONDepth+1), nest(MaxJSONDepth)
	desc, _ := ParseJSONPath("$..*")
	if n, err := desc.Select(shallow); err != nil || len(n) != MaxJSONDepth {
		t.Errorf("$..* on %d levels: %d values, %v; want %d", MaxJSONDepth, len(n), err, MaxJSONDepth)
	}
	if _, err := desc.Select(deep); err == nil || !strings.Contains(err.Error(), "nests deeper than 100 levels") {
		t.Errorf("$..* on %d levels: %v; want the depth refused", MaxJSONDepth+1, err)
	}
	idx, _ := ParseJSONPath("$[0][0]")
	if n, err := idx.Select(deep); err != nil || len(n) != 1 {
		t.Errorf("$[0][0] on %d levels: %v, %v; want one value", MaxJSONDepth+1, n, err)
	}
}

// validate accepts what the library parses, in expectations and captures
// alike, and reports what it cannot parse where the path is written.
func TestValidateJSONPaths(t *testing.T) {
	t.Parallel()
	_, issues := testIssues(t, `test:
  smoke:
    - name: x
      request: {url: "http://h/"}
      expect:
        json: {"$..id": "*", "$.items[?@.sku=='A'].n": 1, "data.items[0].id": x}
        json_match: {"$.items[*].sku": "^[A-Z]$"}
        json_absent: ["$..error"]
      capture: {token: "$..token", first: {json: "$.items[0].id", secret: false}}
    - name: y
      request: {url: "http://h/${token}"}
      expect: {json_absent: ["$.items[?@.n>]"]}
`)
	if len(issues) != 1 {
		t.Fatalf("issues %v; want only the one of test.smoke[1]", issues)
	}
	is := issues[0]
	if is.Path != "test.smoke[1].expect.json_absent[0]" || is.Line != 13 ||
		!strings.Contains(is.Message, `JSONPath "$.items[?@.n>]" does not parse: jsonpath: `) || !strings.Contains(is.Message, "at position 14") {
		t.Errorf("issue %+v; want the unparseable path with its line and position", is)
	}
}
