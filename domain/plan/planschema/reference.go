package planschema

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/kis-core/runbook/domain/plan"
)

// homes are where a record type used in several places is documented:
// everywhere else links there. Types not listed are documented where they
// first appear.
var homes = map[reflect.Type]string{
	stepType:                           "deploy.steps[]",
	reflect.TypeOf(plan.Command{}):     "deploy.steps[].command",
	reflect.TypeOf(plan.Backup{}):      "preflight.backup",
	reflect.TypeOf(plan.Expect{}):      "test.smoke[].expect",
	reflect.TypeOf(plan.Request{}):     "test.smoke[].request",
	smokeType:                          "test.smoke[]",
	reflect.TypeOf(plan.HTTPStep{}):    "deploy.steps[].http",
	reflect.TypeOf(plan.WaitStep{}):    "deploy.steps[].wait",
	reflect.TypeOf(plan.WaitUntil{}):   "deploy.steps[].wait.until",
	reflect.TypeOf(plan.SQLStep{}):     "deploy.steps[].sql",
	reflect.TypeOf(plan.RestoreStep{}): "deploy.steps[].restore",
}

// placed is a field at its path in a plan.
type placed struct {
	field
	path  string // e.g. deploy.steps[].timeout
	phase string // what reads it (inherited)
	// record is the record type the value holds (itself, or its list's or
	// mapping's elements), nil for other values.
	record reflect.Type
	// home: the record's fields are documented here (not a link).
	home bool
}

// walk lists every field of the plan in order, depth first, expanding a
// record type only at its home.
func walk() ([]placed, error) {
	var out []placed
	expanded := map[reflect.Type]bool{}
	var visit func(t reflect.Type, path, phase string) error
	visit = func(t reflect.Type, path, phase string) error {
		fields, err := fieldsOf(t)
		if err != nil {
			return err
		}
		for _, f := range fields {
			p := placed{field: f, path: join(path, f.key), phase: f.doc.Phase}
			if p.phase == "" {
				p.phase = phase
			}
			rec, ok := recordIn(f.typ)
			if f.owner == rollbackType && f.key == "rollback_steps" {
				rec, ok = stepType, true
			}
			if ok {
				p.record = rec
				sub := p.path + elemSuffix(f.typ)
				home, listed := homes[rec]
				p.home = !expanded[rec] && (!listed || home == sub)
			}
			out = append(out, p)
			if p.home {
				expanded[p.record] = true
				if err := visit(p.record, p.path+elemSuffix(f.typ), p.phase); err != nil {
					return err
				}
			}
			if f.owner == planType && f.key == "approval" {
				// The reserved key beside the roles.
				td := plan.ApprovalTimeoutDoc()
				out = append(out, placed{field: field{owner: planType, key: plan.ApprovalTimeoutKey, typ: durationType, doc: td},
					path: join(p.path, plan.ApprovalTimeoutKey), phase: td.Phase})
			}
		}
		return nil
	}
	if err := visit(planType, "", ""); err != nil {
		return nil, err
	}
	for t, home := range homes {
		if !expanded[t] {
			return nil, fmt.Errorf("plan reference: %s's home %s is not a path of the plan (planschema.homes)", t.Name(), home)
		}
	}
	return out, nil
}

// elemSuffix is what a path adds to reach a record of a list ("[]") or of
// a mapping (".<name>").
func elemSuffix(t reflect.Type) string {
	switch deref(t).Kind() {
	case reflect.Slice:
		return "[]"
	case reflect.Map:
		return ".<name>"
	}
	return ""
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// anchor is the HTML id of a path's heading.
func anchor(path string) string {
	var b strings.Builder
	dash := false
	for _, r := range path {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.Trim(b.String(), "-")
}

// typeText names a field's type for people.
func typeText(p placed, homeOf map[reflect.Type]string) string {
	if p.owner == rollbackType && p.key == "rollback_steps" {
		return "list of steps (as [`deploy.steps[]`](#" + anchor(homeOf[stepType]) + ")) or texts, or one numbered text"
	}
	if p.owner == planType && p.key == "approval" {
		return "mapping of role → approval, and `timeout`"
	}
	if p.owner == smokeType && p.key == "capture" {
		return "mapping of name → capture"
	}
	return goTypeText(p.typ, p.doc, homeOf, p.home)
}

func goTypeText(t reflect.Type, doc plan.FieldDoc, homeOf map[reflect.Type]string, home bool) string {
	t = deref(t)
	switch {
	case t == durationType:
		return "duration"
	case t == triggerType:
		return "text or {metric, op, value}"
	case isRecord(t):
		if home {
			return "mapping"
		}
		return "mapping (as [`" + homeOf[t] + "`](#" + anchor(homeOf[t]) + "))"
	}
	switch t.Kind() {
	case reflect.String:
		return "text"
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "whole number"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Bool:
		return "true or false"
	case reflect.Interface:
		return "any YAML value"
	case reflect.Slice:
		return "list of " + plural(goTypeText(t.Elem(), doc, homeOf, home))
	case reflect.Map:
		return "mapping of name → " + goTypeText(t.Elem(), doc, homeOf, home)
	}
	return t.String()
}

func plural(s string) string {
	switch {
	case s == "text":
		return "texts"
	case s == "number", s == "whole number", s == "mapping":
		return s + "s"
	case strings.HasPrefix(s, "mapping "):
		return "mappings " + strings.TrimPrefix(s, "mapping ")
	}
	return s
}

var phaseText = map[string]string{
	plan.PhasePreflight: "read by preflight",
	plan.PhaseDeployer:  "read by the deployer",
	plan.PhaseMonitor:   "read by the monitor",
	plan.PhaseTester:    "read by the tester",
	plan.PhaseReporter:  "read by the reporter",
	plan.PhaseValidate:  "shown (validate, report); nothing acts on it",
}

// Reference is docs/plan-reference.md.
func Reference() (string, error) {
	fields, err := walk()
	if err != nil {
		return "", err
	}
	homeOf := map[reflect.Type]string{}
	for _, p := range fields {
		if p.record != nil && p.home {
			homeOf[p.record] = p.path + elemSuffix(p.typ)
		}
	}
	if _, ok := homeOf[stepType]; !ok {
		return "", fmt.Errorf("plan reference: no home for steps")
	}
	var b strings.Builder
	item := false // the last thing written is a list item
	b.WriteString(referenceIntro)
	b.WriteString("\n## Sections\n\n")
	for _, p := range fields {
		if !strings.Contains(p.path, ".") {
			fmt.Fprintf(&b, "- [`%s`](#%s) — %s\n", p.path, anchor(p.path), mdText(firstSentence(p.doc.Doc)))
			item = true
		}
	}
	for _, p := range fields {
		top := !strings.Contains(p.path, ".")
		if top || (p.record != nil && p.home) {
			level := "###"
			if top {
				level = "##"
			}
			heading := p.path + elemSuffix(p.typ)
			if item {
				b.WriteString("\n")
			}
			item = false
			fmt.Fprintf(&b, "<a id=\"%s\"></a>\n\n%s `%s`\n\n", anchor(heading), level, heading)
			if anchor(heading) != anchor(p.path) {
				// Links to the field itself land here too.
				fmt.Fprintf(&b, "<a id=\"%s\"></a>\n", anchor(p.path))
			}
			writeEntry(&b, p, homeOf, true)
			continue
		}
		writeEntry(&b, p, homeOf, false)
		item = true
	}
	return b.String(), nil
}

func writeEntry(b *strings.Builder, p placed, homeOf map[reflect.Type]string, heading bool) {
	var facts []string
	facts = append(facts, typeText(p, homeOf))
	if p.doc.Default != "" {
		facts = append(facts, "default "+code(p.doc.Default))
	}
	if len(p.doc.Allowed) > 0 {
		words := make([]string, len(p.doc.Allowed))
		for i, a := range p.doc.Allowed {
			words[i] = "`" + a + "`"
		}
		facts = append(facts, "one of "+strings.Join(words, ", "))
	}
	facts = append(facts, phaseText[p.phase])
	example := "Example: `" + p.key + ": " + p.doc.Example + "`"
	if p.owner == smokeType && p.key == "capture" {
		example += ". Each value: " + plan.CaptureDoc().Doc
	}
	if heading {
		fmt.Fprintf(b, "*%s*\n\n%s\n\n%s\n\n", strings.Join(facts, " · "), mdText(p.doc.Doc), example)
		return
	}
	fmt.Fprintf(b, "- **`%s`** · %s  \n  %s %s\n", p.key, strings.Join(facts, " · "), mdText(p.doc.Doc), example)
}

// code quotes a default: values as code, words as they are.
func code(s string) string {
	if strings.Contains(s, " ") && !strings.ContainsAny(s[:1], "{[<") {
		return mdText(s)
	}
	return "`" + s + "`"
}

// mdText is text for Markdown: < and > outside `code` are escaped, so
// that alert:<alertname> is not read as an HTML tag.
func mdText(s string) string {
	var b strings.Builder
	inCode := false
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r == '`':
			inCode = !inCode
			b.WriteRune(r)
		case r == '<' && !inCode:
			b.WriteString("&lt;")
		case r == '>' && !inCode:
			b.WriteString("&gt;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}

const referenceIntro = `<!-- Generated by ` + "`" + `go run ./domain/plan/planschema/gen` + "`" + ` from domain/plan/types.go and
     domain/plan/fielddoc.go: do not edit; a test fails when it is out of date. -->

# Plan reference

A change plan is one YAML document: the seed's change_plan_template.yml fields
(change_request … approval) and the executable parts (preflight, deploy,
monitor, test, report). Every field is listed below with its type, default,
allowed values, what reads it, and an example.

- ` + "`runbook init`" + ` writes a commented plan to start from;
  ` + "`examples/plans/minimal.yaml`" + ` is a short one. [plans.md](plans.md) is a
  guide to what plans can do.
- ` + "`runbook validate PLAN`" + ` checks a plan the way every service reads it: each
  error names its line, column and field, and what would be right. An unknown
  (misspelt) field is an error everywhere.
- ` + "`runbook schema`" + ` prints the plan's JSON Schema (docs/plan.schema.json). With
  the first line ` + "`# yaml-language-server: $schema=<path or URL of plan.schema.json>`" + `
  editors with a YAML language server (VS Code's YAML extension, Neovim,
  IntelliJ) complete and check fields as you type. The schema checks the
  shape; validate also checks URLs, one kind per step, references between
  fields and the rest.

Reading the entries:

- **duration**: Go's form (` + "`30s`, `5m`, `1h30m`, `250ms`" + `) or the seed's words
  (` + "`\"2 hours\"`, `\"30 minutes\"`, `\"15 min\"`, `\"1 day\"`" + `); ` + "`0`" + ` is zero, which for
  most durations is refused (leave the field out for the default).
- **text**: a YAML scalar; a number or true/false is read as its text.
- A field written with no value (` + "`key:`" + ` or ` + "`key: null`" + `) is left out.
- Top-level keys starting with ` + "`x-`" + ` are ignored (handy to hold YAML anchors,
  ` + "`x-retry: &retry {retries: 2}`" + `, merged with ` + "`<<: *retry`" + `).
- "read by" names the service that acts on the field: preflight (PRE-FLIGHT,
  PLAN), the deployer (ACT, the gate, rollbacks), the monitor (the watch
  window), the tester (TEST) and the reporter (REPORT, notifications).
`
