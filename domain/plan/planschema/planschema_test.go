package planschema_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/plan/planschema"
)

// repoRoot finds the repository root (where go.work is).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.work not found")
		}
		dir = parent
	}
}

// The committed docs/plan.schema.json and docs/plan-reference.md are what
// the generator writes from the plan's types now (run in make test).
func TestGeneratedFilesAreUpToDate(t *testing.T) {
	t.Parallel()
	schema, err := planschema.JSON()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := planschema.Reference()
	if err != nil {
		t.Fatal(err)
	}
	root := repoRoot(t)
	for name, want := range map[string][]byte{planschema.SchemaFile: schema, planschema.ReferenceFile: []byte(ref)} {
		got, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatalf("%v: generate it with %s", err, planschema.Regenerate)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date with the plan's types and docs (domain/plan/types.go, fielddoc.go): regenerate it with %s", name, planschema.Regenerate)
		}
	}
}

const schemaURL = "https://runbook.invalid/docs/plan.schema.json"

// compiler holds the plan schema, read by a real JSON Schema validator.
func compiler(t *testing.T) *jsonschema.Compiler {
	t.Helper()
	data, err := planschema.JSON()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(schemaURL, doc); err != nil {
		t.Fatal(err)
	}
	return c
}

func compile(t *testing.T) *jsonschema.Schema {
	t.Helper()
	sch, err := compiler(t).Compile(schemaURL)
	if err != nil {
		t.Fatalf("the plan schema does not compile: %v", err)
	}
	return sch
}

// instance is a YAML plan as the JSON value a schema validator sees
// (aliases and merge keys expanded, as editors do).
func instance(t *testing.T, name string, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return inst
}

// validPlans are the plans the parser accepts that the schema must accept
// too: the examples, the seed's change_plan_template.yml, and the
// parser's and the CLI's test plans.
func validPlans(t *testing.T) map[string][]byte {
	t.Helper()
	root := repoRoot(t)
	var files []string
	for _, glob := range []string{"examples/plans/*.yaml", "domain/plan/testdata/*.yml", "cmd/runbook/internal/cli/testdata/describe/*.yaml"} {
		m, err := filepath.Glob(filepath.Join(root, glob))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	out := map[string][]byte{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		out[rel] = data
	}
	for _, must := range []string{"examples/plans/good.yaml", "examples/plans/bad-release.yaml", "examples/plans/minimal.yaml", "domain/plan/testdata/seed_template.yml"} {
		if out[must] == nil {
			t.Fatalf("%s is missing", must)
		}
	}
	return out
}

// Every plan the parser accepts passes the schema: the examples, the
// seed's template (with its nulls and text rollback steps), and the rest.
func TestValidPlansPassTheSchema(t *testing.T) {
	t.Parallel()
	sch := compile(t)
	plans := validPlans(t)
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range plans {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range names {
		data := plans[name]
		if p, issues := plan.Parse(name, data); p == nil {
			t.Errorf("%s: the parser refuses it: %s", name, plan.Errors(issues))
			continue
		}
		if err := sch.Validate(instance(t, name, data)); err != nil {
			t.Errorf("%s: the parser accepts it, the schema does not:\n%v", name, err)
		}
	}
}

// A misspelt key fails the schema, wherever it is, as it fails the parser.
func TestMisspeltKeysFailTheSchemaAndTheParser(t *testing.T) {
	t.Parallel()
	sch := compile(t)
	base, err := os.ReadFile(filepath.Join(repoRoot(t), "examples/plans/minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ from, to, field string }{
		{"\ndeploy:\n", "\ndeploi:\n", "deploi"},
		{"command: {shell:", "comand: {shell:", "comand"},
		{"initial_delay: 5s", "initial_dealy: 5s", "initial_dealy"},
		{"http_probe: {url:", "http_probe: {ulr:", "ulr"},
		{"expect: {status: 200}", "expect: {stauts: 200}", "stauts"},
		{"  priority: low", "  priorty: low", "priorty"},
		{"  thresholds:", "  threshold:", "threshold"},
	} {
		if !strings.Contains(string(base), tc.from) {
			t.Fatalf("minimal.yaml has no %q", tc.from)
		}
		data := []byte(strings.Replace(string(base), tc.from, tc.to, 1))
		_, issues := plan.Parse("typo.yaml", data)
		if !strings.Contains(plan.Errors(issues), fmt.Sprintf("unknown field %q", tc.field)) {
			t.Errorf("%s: the parser does not refuse it: %v", tc.field, issues)
		}
		err := sch.Validate(instance(t, tc.field, data))
		if err == nil {
			t.Errorf("%s: the schema accepts a misspelt key", tc.field)
		} else if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: the schema's error does not name it:\n%v", tc.field, err)
		}
	}
}

// The parser's test plans that it refuses for an unknown field, the
// schema refuses too.
func TestUnknownFieldsAgreeWithTheParser(t *testing.T) {
	t.Parallel()
	sch := compile(t)
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "domain/plan/testdata/invalid/*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, issues := plan.Parse(f, data)
		if !strings.Contains(plan.Errors(issues), "unknown field") {
			continue
		}
		var v any
		if yaml.Unmarshal(data, &v) != nil {
			continue // not YAML a validator could read
		}
		n++
		if err := sch.Validate(instance(t, f, data)); err == nil {
			t.Errorf("%s: the parser refuses an unknown field (%s), the schema accepts it", filepath.Base(f), plan.Errors(issues))
		}
	}
	if n == 0 {
		t.Fatal("no test plan with an unknown field found")
	}
}

// Each field's example in the reference is a value its own schema accepts.
func TestEveryExampleFitsItsField(t *testing.T) {
	t.Parallel()
	data, err := planschema.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Properties  map[string]json.RawMessage `json:"properties"`
		Definitions map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	ptrs := map[string]json.RawMessage{}
	for k, p := range doc.Properties {
		ptrs["/properties/"+k] = p
	}
	for name, d := range doc.Definitions {
		for k, p := range d.Properties {
			ptrs["/definitions/"+name+"/properties/"+k] = p
		}
	}
	keys := make([]string, 0, len(ptrs))
	for k := range ptrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) < 150 {
		t.Fatalf("only %d fields in the schema", len(keys))
	}
	c := compiler(t)
	for _, ptr := range keys {
		var p struct {
			Examples []json.RawMessage `json:"examples"`
		}
		if err := json.Unmarshal(ptrs[ptr], &p); err != nil {
			t.Fatal(err)
		}
		if len(p.Examples) != 1 {
			t.Errorf("%s: %d examples, want 1", ptr, len(p.Examples))
			continue
		}
		sch, err := c.Compile(schemaURL + "#" + ptr)
		if err != nil {
			t.Fatalf("%s: %v", ptr, err)
		}
		ex, err := jsonschema.UnmarshalJSON(bytes.NewReader(p.Examples[0]))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(ex); err != nil {
			t.Errorf("%s: its example %s does not fit it (domain/plan/fielddoc.go): %v", ptr, p.Examples[0], err)
		}
	}
}
