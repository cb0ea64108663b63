package expect

import (
	"slices"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
)

// A compared value is shown with strings in quotes: the text "2" and the
// number 2 read differently, and a deploy's health error reads
// field $.release is "old" (expected "new").
func TestMismatchShowsStringsQuoted(t *testing.T) {
	t.Parallel()
	r := Evaluate(plan.Expect{JSON: map[string]any{"$.release": "new", "version": 2, "n": "7"}},
		Observation{Status: 200, Body: []byte(`{"release":"old","version":"2","n":7}`)})
	want := []string{`field $.release is "old" (expected "new")`, `field n is 7 (expected "7")`, `field version is "2" (expected 2)`}
	if r.Pass || !slices.Equal(r.Errors, want) {
		t.Errorf("errors %q, want %q", r.Errors, want)
	}
}
