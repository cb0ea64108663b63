package expect

import (
	"testing"

	"github.com/kis-core/runbook/domain/plan"
)

// FuzzEvaluate: whatever a response's body and a plan's JSON path (even one
// validation would refuse), judging and capturing do not panic, a failed
// judgement says why, and a capture gives a value or an error.
//
//	go test -run '^$' -fuzz FuzzEvaluate -fuzztime 1m ./domain/expect/
func FuzzEvaluate(f *testing.F) {
	body := `{"token":"t","data":{"items":[{"id":"x","n":1},{"id":"y","n":2}]},"nil":null}`
	for _, s := range []struct{ path, body string }{
		{"token", body}, {"$..id", body}, {"$.data.items[?@.n>1].id", body}, {"data.items.0.id", body},
		{"$.data.items[*]", body}, {"$", "[]"}, {"[0]", "[1]"}, {"$..*", `{"a":[[[[1]]]]}`}, {"$.a[", "{}"},
		{"nil", body}, {"a", "not json"}, {"", body},
	} {
		f.Add(s.path, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		obs := Observation{Status: 200, Body: body}
		r := Evaluate(plan.Expect{JSON: map[string]any{path: "*"}, JSONMatch: map[string]string{path: "x"}, JSONAbsent: []string{path}}, obs)
		if !r.Pass && len(r.Errors) == 0 {
			t.Fatalf("failed without a reason: %+v", r)
		}
		if r.Pass {
			t.Fatalf("%q is both present and absent in %q: %+v", path, body, r)
		}
		if v, err := Capture(plan.Capture{JSON: path}, obs); (err == nil) == (v == nil) {
			t.Fatalf("capture %q = %v, %v", path, v, err)
		}
	})
}
