package plan

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Issue is one validation finding: where, what was written, what is wrong
// and what would be right.
type Issue struct {
	Path    string // e.g. deploy.steps[2].timeout
	Line    int    // 1-based, 0 when unknown
	Column  int
	Value   string
	Message string
	Warning bool
}

func (i Issue) String() string {
	return fmt.Sprintf("%d:%d %s: %s", i.Line, i.Column, i.Path, i.Message)
}

// HasErrors reports whether any issue is an error (not a warning).
func HasErrors(issues []Issue) bool {
	for _, i := range issues {
		if !i.Warning {
			return true
		}
	}
	return false
}

// Parse reads and validates a plan. It reports every issue it finds, errors
// and warnings, ordered by position; source names the plan in syntax
// errors. The plan is nil when any issue is an error.
//
// Unknown fields are errors everywhere (a typo must not disable a check).
// Defaults are not filled in: the Effective* methods give them.
func Parse(source string, data []byte) (*Plan, []Issue) {
	file, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, []Issue{syntaxIssue(source, err)}
	}
	var docs []*ast.DocumentNode
	for _, doc := range file.Docs {
		if doc != nil && doc.Body != nil {
			if _, comment := doc.Body.(*ast.CommentGroupNode); !comment {
				docs = append(docs, doc)
			}
		}
	}
	if len(docs) == 0 {
		return nil, []Issue{{Path: source, Message: "the plan is empty: write a YAML mapping with change_request, deploy, ... (see the seed's change_plan_template.yml)"}}
	}
	if len(docs) > 1 {
		line, col := nodePos(docs[1].Body)
		return nil, []Issue{{Path: source, Line: line, Column: col, Message: fmt.Sprintf("the plan has %d YAML documents (--- separators): write exactly one", len(docs))}}
	}

	d := newDecoder()
	body := docs[0].Body
	d.collectAnchors(body)
	var p Plan
	if _, ok := d.entries(d.resolve(body)); !ok {
		line, col := nodePos(body)
		return nil, []Issue{{Path: source, Line: line, Column: col, Message: fmt.Sprintf("a plan must be a mapping (change_request:, deploy:, ...), got %s", describeNode(d.resolve(body)))}}
	}
	d.decode(body, reflect.ValueOf(&p).Elem(), "")
	if p.Test.Load != nil && d.set("test.load.gates.error_rate") {
		p.Test.Load.Gates.errorRateSet = true
	}

	c := &checker{d: d}
	c.plan(&p)
	issues := append(d.issues, c.issues...)
	sortIssues(issues)
	if HasErrors(issues) {
		return nil, issues
	}
	return &p, issues
}

func (d *decoder) set(path string) bool {
	n, ok := d.nodes[path]
	return ok && !isNull(n)
}

// syntaxIssue turns a YAML parser error into an issue with its position.
func syntaxIssue(source string, err error) Issue {
	var tk *token.Token
	msg := err.Error()
	var se *yaml.SyntaxError
	var de *yaml.DuplicateKeyError
	switch {
	case errors.As(err, &se):
		tk, msg = se.Token, se.Message
	case errors.As(err, &de):
		tk, msg = de.Token, de.Message
	}
	is := Issue{Path: source, Message: "YAML syntax: " + msg}
	if tk != nil && tk.Position != nil {
		is.Line, is.Column = tk.Position.Line, tk.Position.Column
		first, _, _ := strings.Cut(tk.Value, "\n")
		is.Value = strings.TrimSpace(first)
	}
	return is
}
