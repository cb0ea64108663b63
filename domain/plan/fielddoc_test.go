package plan

import (
	"reflect"
	"regexp"
	"slices"
	"testing"
)

// planRecords lists the record types a plan holds, from Plan down.
func planRecords() []reflect.Type {
	var out []reflect.Type
	seen := map[reflect.Type]bool{}
	var visit func(t reflect.Type)
	visit = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == durationType || seen[t] {
			return
		}
		seen[t] = true
		out = append(out, t)
		for _, f := range YAMLFields(t) {
			visit(t.Field(f.Index).Type)
		}
	}
	visit(reflect.TypeOf(Plan{}))
	return out
}

// Every field a plan can write has its documentation (what it is and an
// example), and every entry documents a field: the reference and the
// schema are generated from them (package planschema).
func TestEveryFieldIsDocumented(t *testing.T) {
	t.Parallel()
	used := map[string]bool{"Plan.approval.timeout": true, "Capture": true}
	n := 0
	for _, rt := range planRecords() {
		for _, f := range YAMLFields(rt) {
			key := rt.Name() + "." + f.Name
			d, ok := DocOf(rt, f.Name)
			switch {
			case !ok:
				t.Errorf("%s (Go field %s) has no entry in fieldDocs (fielddoc.go)", key, rt.Field(f.Index).Name)
			case d.Doc == "" || d.Example == "":
				t.Errorf("%s: fieldDocs needs Doc and Example", key)
			}
			used[key] = true
			n++
		}
	}
	for key := range fieldDocs {
		if !used[key] {
			t.Errorf("fieldDocs[%q] documents no field of the plan: remove it or fix its name", key)
		}
	}
	if n < 150 {
		t.Errorf("only %d plan fields found: the walk over the plan's types is broken", n)
	}
	for _, key := range []string{"Plan.approval.timeout", "Capture"} {
		if fieldDocs[key].Doc == "" {
			t.Errorf("fieldDocs[%q] is missing", key)
		}
	}
}

// A top-level field names the service that reads it; deeper ones may
// inherit it. Allowed words are the validator's own.
func TestFieldDocsPhasesAndWords(t *testing.T) {
	t.Parallel()
	phases := []string{PhasePreflight, PhaseDeployer, PhaseMonitor, PhaseTester, PhaseReporter, PhaseValidate}
	for key, d := range fieldDocs {
		if d.Phase != "" && !slices.Contains(phases, d.Phase) {
			t.Errorf("fieldDocs[%q].Phase = %q, want one of %v", key, d.Phase, phases)
		}
	}
	for _, f := range YAMLFields(reflect.TypeOf(Plan{})) {
		if d, _ := DocOf(reflect.TypeOf(Plan{}), f.Name); d.Phase == "" {
			t.Errorf("Plan.%s has no Phase: top-level fields name what reads them", f.Name)
		}
	}
	if d, _ := DocOf(reflect.TypeOf(ChangeRequest{}), "type"); !slices.Equal(d.Allowed, changeTypes) {
		t.Errorf("change_request.type allows %v, the validator %v", d.Allowed, changeTypes)
	}
}

// The schema's duration patterns accept exactly what ParseDuration
// accepts, on a table of texts either way.
func TestDurationPatternsAgreeWithParseDuration(t *testing.T) {
	t.Parallel()
	var res []*regexp.Regexp
	for _, p := range DurationPatterns() {
		res = append(res, regexp.MustCompile(p))
	}
	for _, s := range []string{
		"30s", "5m", "1h30m", "250ms", "1.5h", ".5s", "0", "+0", "-5s", " 30s ", "10µs", "3ns",
		"2 hours", "30 minutes", "15 min", "1 day", "2 Hours", "5 MINUTES", "1.5 hrs", "10 sec", "3d", "7 days", "100 milliseconds",
		"", "30", "abc", "5 weeks", "1h 30m", "1H30M", "s", "2 hours ago", "1..5s", "- 5s", "1e3s", "0x10s", "5m30", "h1",
	} {
		_, err := ParseDuration(s)
		matched := false
		for _, re := range res {
			matched = matched || re.MatchString(s)
		}
		if matched != (err == nil) {
			t.Errorf("%q: ParseDuration error %v, but the schema's patterns match: %v", s, err, matched)
		}
	}
}
