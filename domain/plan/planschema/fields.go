// Package planschema generates the plan's JSON Schema
// (docs/plan.schema.json, printed by `runbook schema`) and its reference
// (docs/plan-reference.md) from the plan's Go types (domain/plan/types.go,
// read by reflection over their yaml tags, as the parser reads them) and
// the documentation next to them (plan.DocOf, domain/plan/fielddoc.go).
// Regenerate both files with
//
//	go run ./domain/plan/planschema/gen
//
// (make docs); a test fails when the committed files differ.
package planschema

import (
	"fmt"
	"reflect"

	"github.com/kis-core/runbook/domain/plan"
)

// Regenerate is the command that rewrites the generated files.
const Regenerate = "go run ./domain/plan/planschema/gen (make docs)"

// The generated files, relative to the repository root.
const (
	SchemaFile    = "docs/plan.schema.json"
	ReferenceFile = "docs/plan-reference.md"
)

var (
	planType     = reflect.TypeOf(plan.Plan{})
	durationType = reflect.TypeOf(plan.Duration{})
	triggerType  = reflect.TypeOf(plan.TriggerCondition{})
	stepType     = reflect.TypeOf(plan.Step{})
	rollbackType = reflect.TypeOf(plan.RollbackPlan{})
	smokeType    = reflect.TypeOf(plan.SmokeTest{})
)

// field is one field of a plan type, with its documentation.
type field struct {
	owner reflect.Type
	key   string
	typ   reflect.Type // the Go type, pointers removed
	doc   plan.FieldDoc
}

// fieldsOf lists the documented fields of struct type t; a field without
// documentation is an error naming where its entry goes.
func fieldsOf(t reflect.Type) ([]field, error) {
	var out []field
	for _, f := range plan.YAMLFields(t) {
		doc, ok := plan.DocOf(t, f.Name)
		if !ok {
			return nil, fmt.Errorf("plan field %s.%s (yaml %q) has no documentation: add \"%s.%s\" to fieldDocs in domain/plan/fielddoc.go", t.Name(), t.Field(f.Index).Name, f.Name, t.Name(), f.Name)
		}
		if doc.Doc == "" || doc.Example == "" {
			return nil, fmt.Errorf("the documentation of plan field %s.%s needs Doc and Example (domain/plan/fielddoc.go)", t.Name(), f.Name)
		}
		out = append(out, field{owner: t, key: f.Name, typ: deref(t.Field(f.Index).Type), doc: doc})
	}
	return out, nil
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// isRecord reports a struct type whose fields a plan writes as a mapping
// (not a duration, nor a text-or-mapping like a trigger condition).
func isRecord(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t != durationType && t != triggerType
}

// structsIn lists the record types in t: itself, or its element's.
func recordIn(t reflect.Type) (reflect.Type, bool) {
	t = deref(t)
	switch t.Kind() {
	case reflect.Slice, reflect.Map:
		return recordIn(t.Elem())
	}
	if isRecord(t) {
		return t, true
	}
	return nil, false
}
