package planschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/kis-core/runbook/domain/plan"
)

// Schema is a JSON Schema (draft-07: what editors' YAML and JSON language
// servers read) node.
type Schema struct {
	Schema               string             `json:"$schema,omitempty"`
	Ref                  string             `json:"$ref,omitempty"`
	Title                string             `json:"title,omitempty"`
	Description          string             `json:"description,omitempty"`
	Type                 any                `json:"type,omitempty"`
	Enum                 []any              `json:"enum,omitempty"`
	Pattern              string             `json:"pattern,omitempty"`
	Properties           map[string]*Schema `json:"properties,omitempty"`
	PatternProperties    map[string]*Schema `json:"patternProperties,omitempty"`
	AdditionalProperties any                `json:"additionalProperties,omitempty"`
	Items                *Schema            `json:"items,omitempty"`
	AllOf                []*Schema          `json:"allOf,omitempty"`
	AnyOf                []*Schema          `json:"anyOf,omitempty"`
	Examples             []any              `json:"examples,omitempty"`
	Definitions          map[string]*Schema `json:"definitions,omitempty"`
}

// Where a plan's editor finds the schema: the first line of the example
// plans (relative to examples/plans/).
const (
	EditorLinePrefix = "# yaml-language-server: $schema="
	ExampleSchemaRef = "../../docs/plan.schema.json"
)

const (
	durationDef = "duration"
	textDef     = "text"
	captureDef  = "capture"
)

// JSON is the plan's JSON Schema, indented, with a final newline: what
// `runbook schema` prints and docs/plan.schema.json holds.
//
// It is strict (a misspelt key fails it, as it fails the parser) and
// accepts what the parser accepts: any field may be null (= left out), a
// text field takes any scalar, durations are texts such as "30s" or
// "2 hours" (or 0), rollback steps and trigger conditions may be texts,
// approval.timeout sits beside the roles, and top-level x- keys are free.
// Rules beyond the shape (URLs, one kind per step, cross-references) are
// the validator's: run `runbook validate`.
func JSON() ([]byte, error) {
	s, err := build()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("plan schema: %w", err)
	}
	return b.Bytes(), nil
}

type builder struct {
	defs map[string]*Schema
}

func build() (*Schema, error) {
	b := &builder{defs: map[string]*Schema{}}
	b.defs[durationDef] = durationSchema()
	b.defs[textDef] = &Schema{Description: "a text (a number or true/false is read as its text)", Type: []string{"string", "number", "boolean", "null"}}
	b.defs[captureDef] = captureSchema()
	root, err := b.object(planType)
	if err != nil {
		return nil, err
	}
	root.Schema = "http://json-schema.org/draft-07/schema#"
	root.Title = "runbook change plan"
	root.Description = "A runbook change plan (YAML). Generated from domain/plan's types by " + Regenerate + "; the reference is docs/plan-reference.md. `runbook validate` checks what a schema cannot (URLs, one kind per step, references between fields)."
	root.Type = "object"
	root.PatternProperties = map[string]*Schema{"^" + plan.ExtensionPrefix: {Description: "an extension field, ignored (e.g. to hold YAML anchors)"}}
	root.Definitions = b.defs
	return root, nil
}

func durationSchema() *Schema {
	s := &Schema{Description: plan.DurationDoc}
	for _, p := range plan.DurationPatterns() {
		s.AnyOf = append(s.AnyOf, &Schema{Type: "string", Pattern: p})
	}
	s.AnyOf = append(s.AnyOf, &Schema{Enum: []any{0}}, &Schema{Type: "null"})
	return s
}

func captureSchema() *Schema {
	d := plan.CaptureDoc()
	return &Schema{Description: d.Doc, AnyOf: []*Schema{
		{Type: "string"},
		{Type: "object", AdditionalProperties: false, Properties: map[string]*Schema{
			"json":   {Type: "string", Description: "a JSON path of the response body"},
			"header": {Type: "string", Description: "a response header's name"},
			"secret": {Type: "boolean", Description: "false shows the value in events (default true: redacted)"},
		}},
	}}
}

// ref is a reference to definition name.
func ref(name string) *Schema { return &Schema{Ref: "#/definitions/" + name} }

// object is the definition of a record type, made once.
func (b *builder) object(t reflect.Type) (*Schema, error) {
	fields, err := fieldsOf(t)
	if err != nil {
		return nil, err
	}
	s := &Schema{Type: []string{"object", "null"}, Properties: map[string]*Schema{}, AdditionalProperties: false}
	for _, f := range fields {
		p, err := b.field(f)
		if err != nil {
			return nil, err
		}
		s.Properties[f.key] = p
	}
	return s, nil
}

// def makes t's definition (once) and refers to it.
func (b *builder) def(t reflect.Type) (*Schema, error) {
	name := t.Name()
	if _, ok := b.defs[name]; !ok {
		b.defs[name] = nil // taken: types refer to themselves only through it
		s, err := b.object(t)
		if err != nil {
			return nil, err
		}
		b.defs[name] = s
	}
	return ref(name), nil
}

// field is the schema of one field: its value's schema, described.
func (b *builder) field(f field) (*Schema, error) {
	v, err := b.fieldValue(f)
	if err != nil {
		return nil, err
	}
	desc := describe(f.doc)
	var ex any
	if err := yaml.Unmarshal([]byte(f.doc.Example), &ex); err != nil {
		return nil, fmt.Errorf("the example of plan field %s.%s, %s, is not YAML: %w (domain/plan/fielddoc.go)", f.owner.Name(), f.key, f.doc.Example, err)
	}
	out := v
	if v.Ref != "" {
		// draft-07 ignores the siblings of $ref: describe beside it.
		out = &Schema{AllOf: []*Schema{v}}
	}
	out.Description = desc
	out.Examples = []any{ex}
	return out, nil
}

func (b *builder) fieldValue(f field) (*Schema, error) {
	switch {
	case f.owner == planType && f.key == "approval":
		ap, err := b.def(reflect.TypeOf(plan.Approval{}))
		if err != nil {
			return nil, err
		}
		td := plan.ApprovalTimeoutDoc()
		return &Schema{Type: []string{"object", "null"},
			Properties:           map[string]*Schema{plan.ApprovalTimeoutKey: {AllOf: []*Schema{ref(durationDef)}, Description: describe(td)}},
			AdditionalProperties: ap}, nil
	case f.owner == rollbackType && f.key == "rollback_steps":
		st, err := b.def(stepType)
		if err != nil {
			return nil, err
		}
		return &Schema{AnyOf: []*Schema{
			{Type: []string{"array", "null"}, Items: &Schema{AnyOf: []*Schema{{Type: "string", Description: "a described manual step: shown to people, never run"}, st}}},
			{Type: "string", Description: "one numbered text (\"1. ... 2. ...\"): described manual steps"},
		}}, nil
	case f.owner == smokeType && f.key == "capture":
		return &Schema{Type: []string{"object", "null"}, AdditionalProperties: ref(captureDef)}, nil
	}
	return b.value(f.typ, f.doc)
}

// value is the schema of a value of Go type t.
func (b *builder) value(t reflect.Type, doc plan.FieldDoc) (*Schema, error) {
	t = deref(t)
	switch {
	case t == durationType:
		return ref(durationDef), nil
	case t == triggerType:
		obj, err := b.def(t)
		if err != nil {
			return nil, err
		}
		return &Schema{AnyOf: []*Schema{{Type: "string", Description: "shown to people"}, obj}}, nil
	case isRecord(t):
		return b.def(t)
	}
	switch t.Kind() {
	case reflect.String:
		if len(doc.Allowed) > 0 {
			enum := make([]any, 0, len(doc.Allowed)+1)
			for _, a := range doc.Allowed {
				enum = append(enum, a)
			}
			return &Schema{Enum: append(enum, nil)}, nil
		}
		return ref(textDef), nil
	case reflect.Int, reflect.Int32, reflect.Int64:
		return &Schema{Type: []string{"integer", "null"}}, nil
	case reflect.Float32, reflect.Float64:
		return &Schema{Type: []string{"number", "null"}}, nil
	case reflect.Bool:
		return &Schema{Type: []string{"boolean", "null"}}, nil
	case reflect.Interface:
		return &Schema{}, nil
	case reflect.Slice:
		items, err := b.value(t.Elem(), plan.FieldDoc{Allowed: doc.Allowed})
		if err != nil {
			return nil, err
		}
		return &Schema{Type: []string{"array", "null"}, Items: items}, nil
	case reflect.Map:
		vals, err := b.value(t.Elem(), plan.FieldDoc{})
		if err != nil {
			return nil, err
		}
		if vals.Ref == "" && vals.Type == nil && vals.AnyOf == nil && vals.Enum == nil {
			return &Schema{Type: []string{"object", "null"}}, nil
		}
		return &Schema{Type: []string{"object", "null"}, AdditionalProperties: vals}, nil
	}
	return nil, fmt.Errorf("plan schema: no JSON Schema for Go type %s", t)
}

// describe is a field's description: what it is, its default, what reads
// it.
func describe(d plan.FieldDoc) string {
	parts := []string{strings.TrimSpace(d.Doc)}
	if d.Default != "" {
		parts = append(parts, "Default: "+d.Default+".")
	}
	return strings.Join(parts, " ")
}
