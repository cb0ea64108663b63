package expect

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

func TestSelectJSONPathRoot(t *testing.T) {
	t.Parallel()
	doc := mustJSON(t, `{"token":"t1","data":{"items":[{"id":"x"}]}}`)
	for _, c := range []struct {
		path string
		want any
		ok   bool
	}{
		{"$.token", "t1", true},
		{"$.data.items[0].id", "x", true},
		{"$.missing", nil, false},
		{"token", "t1", true},
	} {
		got, err := selectPath(doc, c.path)
		if ok := len(got.values) == 1; err != nil || ok != c.ok || (ok && !Equal(c.want, got.values[0])) {
			t.Errorf("selectPath(%q) = %v, %v; want %v, %v", c.path, got.values, err, c.want, c.ok)
		}
	}
	if got, err := selectPath(doc, "$"); err != nil || len(got.values) != 1 || !reflect.DeepEqual(got.values[0], doc) {
		t.Errorf("selectPath($) = %v, %v; want the document", got.values, err)
	}
}

func TestCapture(t *testing.T) {
	t.Parallel()
	obs := Observation{Status: 200, Body: []byte(`{"token":"abc","n":7,"user":{"email":"a@b"},"nil":null,"items":[{"sku":"A","id":"i1"},{"sku":"B","id":"i2"}]}`),
		Header: http.Header{"X-Request-Id": {"req-1"}}}
	for _, c := range []struct {
		name    string
		capture plan.Capture
		want    any
		err     string
	}{
		{"json path", plan.Capture{JSON: "token"}, "abc", ""},
		{"jsonpath root", plan.Capture{JSON: "$.user.email"}, "a@b", ""},
		{"number", plan.Capture{JSON: "n"}, "7", ""},
		{"header", plan.Capture{Header: "x-request-id"}, "req-1", ""},
		{"missing path", plan.Capture{JSON: "data.token"}, nil, "JSON path data.token is missing from the response"},
		{"null", plan.Capture{JSON: "nil"}, nil, "JSON path nil is null"},
		{"missing header", plan.Capture{Header: "X-Trace"}, nil, "header X-Trace is missing"},
		{"recursive descent finds one nested key", plan.Capture{JSON: "$..email"}, "a@b", ""},
		{"a filter that matches one", plan.Capture{JSON: "$.items[?@.sku=='B'].id"}, "i2", ""},
		{"several values", plan.Capture{JSON: "$.items[*].id"}, nil, `JSON path $.items[*].id selects 2 values (["$['items'][0]['id']","$['items'][1]['id']"]): a capture takes one`},
		{"a filter that matches none", plan.Capture{JSON: "$.items[?@.sku=='C'].id"}, nil, "is missing from the response"},
	} {
		got, err := Capture(c.capture, obs)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err = %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || Text(got) != c.want {
			t.Errorf("%s: got %v (%v), want %v", c.name, got, err, c.want)
		}
	}
	if _, err := Capture(plan.Capture{JSON: "token"}, Observation{Body: []byte("<html>")}); err == nil || !strings.Contains(err.Error(), "not JSON") {
		t.Errorf("capture from HTML: %v, want a not-JSON error", err)
	}
}

func TestExpandAndRedact(t *testing.T) {
	t.Parallel()
	env := map[string]string{"SMOKE_PASSWORD": "hunter22"}
	v := NewVars(func(n string) (string, bool) { s, ok := env[n]; return s, ok })
	v.Set("token", "tok-123456", true)
	v.Set("estimate_id", "EST-1", false)
	num, _ := DecodeJSON([]byte("42"))
	v.Set("count", num, false)

	r, err := v.Expand(plan.Request{
		URL:     "http://h/api/v1/estimates/${estimate_id}?q=$${literal}",
		Headers: map[string]string{"Authorization": "Bearer ${token}", "X-Plain": "no refs $5"},
		Body:    "",
		JSON:    map[string]any{"password": "${env:SMOKE_PASSWORD}", "count": "${count}", "label": "n=${count}", "list": []any{"${estimate_id}", 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.URL != "http://h/api/v1/estimates/EST-1?q=${literal}" {
		t.Errorf("url = %q", r.URL)
	}
	if r.Headers["Authorization"] != "Bearer tok-123456" || r.Headers["X-Plain"] != "no refs $5" {
		t.Errorf("headers = %v", r.Headers)
	}
	j := r.JSON.(map[string]any)
	if j["password"] != "hunter22" || !Equal(42, j["count"]) || j["label"] != "n=42" || !Equal([]any{"EST-1", 1}, j["list"]) {
		t.Errorf("json = %#v", j)
	}

	for _, c := range []struct{ in, want string }{
		{"token tok-123456 sent", "token [token] sent"},
		{"password hunter22", "password [env:SMOKE_PASSWORD]"},
		{"estimate EST-1 is public", "estimate EST-1 is public"},
		{"count 42", "count 42"},
	} {
		if got := v.Redact(c.in); got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	long := strings.Repeat("s3cr3t", 30)
	v.Set("jwt", long, true)
	if got := v.Redact("token=" + Show(long)); strings.Contains(got, "s3cr3t") {
		t.Errorf("a long secret shown cut still leaks: %q", got)
	}

	for _, c := range []struct {
		req plan.Request
		err string
	}{
		{plan.Request{URL: "http://h/${nope}"}, "url: ${nope} has no value"},
		{plan.Request{URL: "http://h/", Headers: map[string]string{"X": "${env:UNSET}"}}, "header X: ${env:UNSET} has no value"},
		{plan.Request{URL: "http://h/", JSON: map[string]any{"a": []any{"${x"}}}, "json.a[0]: \"${x\" has ${ without a closing }"},
	} {
		if _, err := v.Expand(c.req); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("Expand(%+v) = %v, want %q", c.req, err, c.err)
		}
	}
}

func TestRefs(t *testing.T) {
	t.Parallel()
	got, err := Refs(plan.Request{URL: "http://h/${a}/${b}", Headers: map[string]string{"X": "${a}"}, Body: "$${c}", JSON: nil})
	if err != nil || !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("Refs = %v, %v; want [a b]", got, err)
	}
	got, err = Refs(plan.Request{URL: "http://h/", JSON: map[string]any{"p": "${env:PW}", "t": "${tok}"}})
	if err != nil || !reflect.DeepEqual(got, []string{"env:PW", "tok"}) {
		t.Errorf("Refs(json) = %v, %v", got, err)
	}
}

func TestEvaluateAssertions(t *testing.T) {
	t.Parallel()
	obs := Observation{
		Status:   201,
		Duration: 12 * time.Millisecond,
		Body:     []byte(`{"estimateId":"EST-20261130-0003","total":1200,"createdBy":"test@company.com","items":[{"code":"A"}]}`),
		Header:   http.Header{"Content-Type": {"application/json; charset=utf-8"}, "Location": {"/api/v1/estimates/EST-20261130-0003"}},
	}
	for _, c := range []struct {
		name   string
		expect plan.Expect
		errs   []string // empty: passes
	}{
		{"status and latency", plan.Expect{Status: 201, MaxMS: 100}, nil},
		{"latency bound", plan.Expect{MaxMS: 5}, []string{"Response time 12ms exceeds threshold 5ms"}},
		{"header equals", plan.Expect{Headers: map[string]string{"content-type": "application/json; charset=utf-8"}}, nil},
		{"header exists", plan.Expect{Headers: map[string]string{"Location": "*"}}, nil},
		{"header differs", plan.Expect{Headers: map[string]string{"Content-Type": "text/plain"}}, []string{`header Content-Type is "application/json; charset=utf-8" (expected "text/plain")`}},
		{"header missing", plan.Expect{Headers: map[string]string{"X-Trace": "*"}}, []string{"header X-Trace is missing"}},
		{"header matches", plan.Expect{HeadersMatch: map[string]string{"Content-Type": "^application/json"}}, nil},
		{"header does not match", plan.Expect{HeadersMatch: map[string]string{"Location": "^/api/v2/"}}, []string{"header Location is \"/api/v1/estimates/EST-20261130-0003\" (does not match ^/api/v2/)"}},
		{"json equals and exists", plan.Expect{JSON: map[string]any{"total": 1200, "estimateId": "*", "$.items[0].code": "A"}}, nil},
		{"json differs", plan.Expect{JSON: map[string]any{"total": 1300}}, []string{"field total is 1200 (expected 1300)"}},
		{"json matches", plan.Expect{JSONMatch: map[string]string{"estimateId": `^EST-\d{8}-\d{4}$`, "total": `^\d+$`}}, nil},
		{"json does not match", plan.Expect{JSONMatch: map[string]string{"createdBy": `@example\.com$`}}, []string{`field createdBy is test@company.com (does not match @example\.com$)`}},
		{"json match on missing", plan.Expect{JSONMatch: map[string]string{"nope": "."}}, []string{"field nope is missing"}},
		{"json absent", plan.Expect{JSONAbsent: []string{"error", "items[1]"}}, nil},
		{"json present", plan.Expect{JSONAbsent: []string{"createdBy"}}, []string{"field createdBy is present (expected absent): test@company.com"}},
		{"body contains", plan.Expect{BodyContains: []string{`"currency"`, "EST-"}}, []string{`body does not contain "\"currency\""`}},
		{"every failure reported", plan.Expect{Status: 200, JSON: map[string]any{"total": 1}, BodyContains: []string{"zzz"}},
			[]string{"HTTP 201 (expected 200)", "field total is 1200 (expected 1)", `body does not contain "zzz"`}},
	} {
		r := Evaluate(c.expect, obs)
		if r.Pass != (len(c.errs) == 0) || !reflect.DeepEqual(r.Errors, c.errs) && len(c.errs) > 0 {
			t.Errorf("%s: pass=%v errors=%q, want %q", c.name, r.Pass, r.Errors, c.errs)
		}
	}
	if r := Evaluate(plan.Expect{JSONMatch: map[string]string{"a": "x"}}, Observation{Status: 200, Body: []byte("<html>")}); r.Pass || !strings.Contains(r.Error(), "not JSON") {
		t.Errorf("json_match on HTML: %+v", r)
	}
}

// A path that selects several values: json and json_match hold when every
// value meets them (an error names the first that does not, where it is
// and how many fail), "*" when there is at least one, json_absent when
// there is none.
func TestEvaluateSeveralValues(t *testing.T) {
	t.Parallel()
	obs := Observation{Status: 200, Body: []byte(`{"items":[{"sku":"A","status":"ok","n":1},{"sku":"B","status":"ok","n":2},{"sku":"C","status":"failed","n":3}],"meta":{"deep":{"error":null}}}`)}
	for _, c := range []struct {
		name    string
		expect  plan.Expect
		details string
		errs    []string // empty: passes
	}{
		{"every value equals", plan.Expect{JSON: map[string]any{"$.items[?@.n<3].status": "ok"}}, `$.items[?@.n<3].status=["ok","ok"]`, nil},
		{"one value differs", plan.Expect{JSON: map[string]any{"$.items[*].status": "ok"}}, "",
			[]string{`field $.items[*].status is "failed" at $['items'][2]['status'] (expected "ok"; 1 of 3 values)`}},
		{"exists: at least one", plan.Expect{JSON: map[string]any{"$..sku": "*"}}, `$..sku=["A","B","C"]`, nil},
		{"a filter that selects one", plan.Expect{JSON: map[string]any{"$.items[?(@.sku=='B')].n": 2}}, "$.items[?(@.sku=='B')].n=2", nil},
		{"a filter that selects none", plan.Expect{JSON: map[string]any{"$.items[?(@.sku=='Z')].n": "*"}}, "",
			[]string{"field $.items[?(@.sku=='Z')].n is missing"}},
		{"every value matches", plan.Expect{JSONMatch: map[string]string{"$.items[*].sku": "^[A-Z]$"}}, `$.items[*].sku=["A","B","C"]`, nil},
		{"two values do not match", plan.Expect{JSONMatch: map[string]string{"$.items[*].sku": "^[AX]$"}}, "",
			[]string{`field $.items[*].sku is B at $['items'][1]['sku'] (does not match ^[AX]$; 2 of 3 values)`}},
		{"absent at any depth", plan.Expect{JSONAbsent: []string{"$..message"}}, "", nil},
		{"present at depth", plan.Expect{JSONAbsent: []string{"$..error"}}, "",
			[]string{"field $..error is present (expected absent): null"}},
		{"a path that does not parse", plan.Expect{JSON: map[string]any{"$.items[": "*"}}, "",
			[]string{`json $.items[: JSONPath "$.items[" does not parse: jsonpath: unexpected eof at position 9`}},
	} {
		r := Evaluate(c.expect, obs)
		if r.Pass != (len(c.errs) == 0) || !reflect.DeepEqual(r.Errors, c.errs) && len(c.errs) > 0 {
			t.Errorf("%s: pass=%v errors=%q, want %q", c.name, r.Pass, r.Errors, c.errs)
		}
		if want := "HTTP 200, Response time: 0ms"; c.details != "" && r.Details != want+", "+c.details {
			t.Errorf("%s: details %q, want %q", c.name, r.Details, want+", "+c.details)
		}
	}
}
