package plan

import (
	"reflect"
	"strings"
	"testing"
)

// testIssues parses a plan with the given test section and returns the
// issues under test.* only.
func testIssues(t *testing.T, section string) (*Plan, []Issue) {
	t.Helper()
	src := "change_request: {id: CR-1, title: smoke, type: maintenance, priority: low}\n" + section
	p, issues := Parse("smoke.yaml", []byte(src))
	var out []Issue
	for _, i := range issues {
		if strings.HasPrefix(i.Path, "test") {
			out = append(out, i)
		}
	}
	return p, out
}

const suitesPlan = `test:
  secret_hosts: [h]
  smoke:
    - name: health
      request: {url: "http://h/api/v1/health"}
  suites:
    - name: critical_paths
      steps:
        - name: User Authentication
          request: {method: POST, url: "http://h/api/v1/auth/login", json: {email: a@b, password: "${env:SMOKE_PASSWORD}"}}
          expect: {status: 200, json: {token: "*"}}
          capture: {token: $.token, request_id: "header:X-Request-Id"}
        - name: Estimate Creation
          request:
            method: POST
            url: "http://h/api/v1/estimate"
            headers: {Authorization: "Bearer ${token}"}
            json: {customerId: c}
          expect:
            status: 201
            json_match: {estimateId: "^EST-"}
            json_absent: [error]
            headers_match: {Content-Type: "^application/json"}
            headers: {Location: "*"}
            body_contains: [estimateId]
          capture: {estimate_id: {json: estimateId, secret: false}}
    - name: api_endpoints
      type: regression
      steps:
        - name: estimate
          request: {url: "http://h/api/v1/estimates/${estimate_id}?x=$${literal}"}
`

func TestSmokeSuitesParse(t *testing.T) {
	t.Parallel()
	p, issues := testIssues(t, suitesPlan)
	if len(issues) > 0 {
		t.Fatalf("issues: %v", issues)
	}
	steps := p.Test.SmokeSteps()
	var got []string
	for _, s := range steps {
		got = append(got, s.Suite+"/"+s.Name+"/"+s.Type+"@"+s.Path)
	}
	want := []string{
		"/health/smoke@test.smoke[0]",
		"critical_paths/User Authentication/smoke@test.suites[0].steps[0]",
		"critical_paths/Estimate Creation/smoke@test.suites[0].steps[1]",
		"api_endpoints/estimate/regression@test.suites[1].steps[0]",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("steps:\n got %q\nwant %q", got, want)
	}
	caps, err := steps[1].Captures()
	if err != nil || caps["token"] != (Capture{JSON: "$.token", Secret: true}) || caps["request_id"] != (Capture{Header: "X-Request-Id", Secret: true}) {
		t.Errorf("captures %+v %v", caps, err)
	}
	caps, _ = steps[2].Captures()
	if caps["estimate_id"] != (Capture{JSON: "estimateId"}) {
		t.Errorf("capture with secret: false = %+v", caps["estimate_id"])
	}
	if e := steps[2].Expect; e.JSONMatch["estimateId"] != "^EST-" || e.JSONAbsent[0] != "error" || e.Headers["Location"] != "*" || e.BodyContains[0] != "estimateId" {
		t.Errorf("expect %+v", e)
	}
	if p.Test.IsEmpty() {
		t.Error("a plan with suites only would count as having no tests")
	}
}

func TestSmokeSuitesInvalid(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, section, path, msg string
	}{
		{"reference before capture", `test:
  suites:
    - name: a
      steps:
        - {name: x, request: {url: "http://h/${token}"}}
        - {name: y, request: {url: "http://h/"}, capture: {token: token}}
`, "test.suites[0].steps[0].request.url", "${token} is not captured by an earlier step"},
		{"unclosed reference", `test:
  smoke:
    - {name: x, request: {url: "http://h/", headers: {Authorization: "Bearer ${token"}}}
`, "test.smoke[0].request.headers.Authorization", "without a closing }"},
		{"bad reference name", `test:
  smoke:
    - {name: x, request: {url: "http://h/", json: {a: ["${a-b}"]}}}
`, "test.smoke[0].request.json.a[0]", "is not a captured value's name"},
		{"bad env name", `test:
  smoke:
    - {name: x, request: {url: "http://h/", body: "${env:lower}"}}
`, "test.smoke[0].request.body", "not an environment variable name"},
		{"capture without path", `test:
  smoke:
    - {name: x, request: {url: "http://h/"}, capture: {token: ""}}
`, "test.smoke[0].capture.token", "a capture needs a JSON path"},
		{"capture bad field", `test:
  smoke:
    - {name: x, request: {url: "http://h/"}, capture: {token: {path: token}}}
`, "test.smoke[0].capture.token", `unknown field "path" in a capture`},
		{"capture twice", `test:
  smoke:
    - {name: x, request: {url: "http://h/"}, capture: {token: token}}
    - {name: y, request: {url: "http://h/"}, capture: {token: token}}
`, "test.smoke[1].capture.token", "token is already captured by test.smoke[0]"},
		{"duplicate test name", `test:
  smoke:
    - {name: x, request: {url: "http://h/"}}
  suites:
    - {name: s, steps: [{name: x, request: {url: "http://h/a"}}]}
`, "test.suites[0].steps[0].name", `test name "x" (type smoke) is already used by test.smoke[0]`},
		{"suite without name", `test:
  suites:
    - {steps: [{name: x, request: {url: "http://h/a"}}]}
`, "test.suites[0].name", "a suite name"},
		{"suite without steps", `test:
  suites:
    - {name: s, steps: []}
`, "test.suites[0].steps", "a suite needs steps"},
		{"suite bad type", `test:
  suites:
    - {name: s, type: load, steps: [{name: x, request: {url: "http://h/a"}}]}
`, "test.suites[0].type", "a test type"},
		{"bad regexp", `test:
  smoke:
    - {name: x, request: {url: "http://h/"}, expect: {json_match: {id: "("}}}
`, "test.smoke[0].expect.json_match.id", "is not a regular expression"},
		{"bad header regexp", `test:
  smoke:
    - {name: x, request: {url: "http://h/"}, expect: {headers_match: {Location: "[a"}}}
`, "test.smoke[0].expect.headers_match.Location", "is not a regular expression"},
		{"bad JSON path in a smoke expect", `test:
  smoke:
    - {name: x, request: {url: "http://h/"}, expect: {json: {"items[*].id": "*"}}}
`, "test.smoke[0].expect.json.items[*].id", "[*] selects every element: that is JSONPath, start the path with $ ($.items[*].id)"},
		{"bad capture path", `test:
  smoke:
    - {name: x, request: {url: "http://h/"}, capture: {token: "$..token["}}
`, "test.smoke[0].capture.token", `JSONPath "$..token[" does not parse: jsonpath: unexpected eof at position 10`},
		{"unknown suite field", `test:
  suites:
    - {name: s, stepz: []}
`, "test.suites[0].stepz", `did you mean "steps"`},
	} {
		_, issues := testIssues(t, c.section)
		found := false
		for _, i := range issues {
			if i.Path == c.path && strings.Contains(i.Message, c.msg) && !i.Warning && i.Line > 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: want an error at %s containing %q (with a line), got %v", c.name, c.path, c.msg, issues)
		}
	}
}

func TestTemplates(t *testing.T) {
	t.Parallel()
	vals := map[string]string{"a": "1", "env:X": "secret"}
	lookup := func(n string) (string, bool) { v, ok := vals[n]; return v, ok }
	for _, c := range []struct {
		in, want, err string
		refs          []string
	}{
		{"plain", "plain", "", nil},
		{"cost $5 and $ {a}", "cost $5 and $ {a}", "", nil},
		{"${a}/${a}", "1/1", "", []string{"a", "a"}},
		{"$${a} is literal, ${a} is not", "${a} is literal, 1 is not", "", []string{"a"}},
		{"${env:X}", "secret", "", []string{"env:X"}},
		{"${b}", "", "${b} has no value", []string{"b"}},
		{"${a", "", "without a closing }", nil},
		{"${}", "", "is not a captured value's name", nil},
	} {
		got, err := ExpandTemplate(c.in, lookup)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ExpandTemplate(%q) err = %v, want %q", c.in, err, c.err)
			}
		} else if err != nil || got != c.want {
			t.Errorf("ExpandTemplate(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
		if refs, err := TemplateRefs(c.in); (err == nil) && !reflect.DeepEqual(refs, c.refs) {
			t.Errorf("TemplateRefs(%q) = %v, want %v", c.in, refs, c.refs)
		}
	}
}

func TestSmokeSuiteBadTypeReportedOnce(t *testing.T) {
	t.Parallel()
	_, issues := testIssues(t, `test:
  suites:
    - {name: s, type: load, steps: [{name: x, request: {url: "http://h/a"}}, {name: y, type: nope, request: {url: "http://h/b"}}]}
`)
	var paths []string
	for _, i := range issues {
		paths = append(paths, i.Path)
	}
	if !reflect.DeepEqual(paths, []string{"test.suites[0].type", "test.suites[0].steps[1].type"}) {
		t.Errorf("issues at %v, want the suite's type and the second step's", paths)
	}
}
