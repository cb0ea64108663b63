package plan

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
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
	if len(data) > MaxPlanSize {
		return nil, []Issue{{Path: source, Message: fmt.Sprintf("the plan is %d bytes, larger than the %d bytes (1 MiB) a plan may have", len(data), MaxPlanSize)}}
	}
	file, issue := parseYAML(source, data)
	if file == nil {
		return nil, []Issue{issue}
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
		return nil, []Issue{{Path: source, Message: "the plan is empty: write a YAML mapping with change_request, deploy, ... (`runbook init` writes a commented plan to start from; every field is in docs/plan-reference.md)"}}
	}
	if len(docs) > 1 {
		line, col := nodePos(docs[1].Body)
		return nil, []Issue{{Path: source, Line: line, Column: col, Message: fmt.Sprintf("the plan has %d YAML documents (--- separators): write exactly one", len(docs))}}
	}

	d := newDecoder()
	body := docs[0].Body
	d.collectAnchors(body)
	var p Plan
	if _, ok := d.entries(d.resolve(body), ""); !ok {
		line, col := nodePos(body)
		return nil, []Issue{{Path: source, Line: line, Column: col, Message: fmt.Sprintf("a plan must be a mapping (change_request:, deploy:, ...), got %s", describeNode(d.resolve(body)))}}
	}
	d.decode(body, reflect.ValueOf(&p).Elem(), "")
	if p.Test.Load != nil && d.set("test.load.gates.error_rate") {
		p.Test.Load.Gates.errorRateSet = true
	}
	p.ApprovalTimeout = d.approvalTimeout

	c := &checker{d: d}
	c.plan(&p)
	issues := append(d.issues, c.issues...)
	sortIssues(issues)
	issues = capIssues(source, issues)
	if HasErrors(issues) {
		return nil, issues
	}
	return &p, issues
}

// MaxPlanSize is the largest plan Parse reads, in bytes.
const MaxPlanSize = 1 << 20

// maxFlowDepth bounds the nesting of [ ] and { }: the YAML parser's time
// grows with the square of it.
const maxFlowDepth = 64

// maxIssues is how many issues Parse lists; the rest are counted in one
// last issue.
const maxIssues = 100

// parseYAML parses data into its AST, or returns the one issue that stops
// it: a syntax error, nesting too deep for the parser, or a parser panic.
func parseYAML(source string, data []byte) (file *ast.File, issue Issue) {
	defer func() {
		// The lexer and parser are not ours: a panic in them is a plan
		// they cannot read.
		if r := recover(); r != nil {
			file, issue = nil, Issue{Path: source, Message: fmt.Sprintf("YAML syntax: the parser failed on this input (%v)", r)}
		}
	}()
	tokens := lexer.Tokenize(string(data))
	depth := 0
	for _, tk := range tokens {
		switch tk.Type {
		case token.SequenceStartType, token.MappingStartType:
			depth++
			if depth > maxFlowDepth {
				is := Issue{Path: source, Message: fmt.Sprintf("[ ] and { } are nested more than %d levels deep: a plan needs far fewer", maxFlowDepth)}
				if tk.Position != nil {
					is.Line, is.Column = tk.Position.Line, tk.Position.Column
				}
				return nil, is
			}
		case token.SequenceEndType, token.MappingEndType:
			depth = max(depth-1, 0)
		}
	}
	file, err := parser.Parse(tokens, 0)
	if err != nil {
		return nil, syntaxIssue(source, err)
	}
	if file == nil {
		return nil, Issue{Path: source, Message: "YAML syntax: the parser read nothing"}
	}
	return file, Issue{}
}

// capIssues keeps the first maxIssues issues and counts the rest in one
// last issue, an error when any of them is.
func capIssues(source string, issues []Issue) []Issue {
	if len(issues) <= maxIssues {
		return issues
	}
	rest := issues[maxIssues:]
	return append(issues[:maxIssues:maxIssues], Issue{
		Path:    source,
		Message: fmt.Sprintf("%d more issue(s) not listed: fix the ones above first", len(rest)),
		Warning: !HasErrors(rest),
	})
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
	// The parser's words, said for people who write plans.
	switch {
	case strings.Contains(msg, "'\t'"):
		is.Message = "YAML syntax: a tab character: YAML indents with spaces only; replace the tab with spaces"
		is.Value = ""
	case strings.ContainsAny(is.Value, `"'`) && !strings.Contains(msg, "quoted"):
		is.Message += ` (is a quote left open on an earlier line? a "quoted text" runs on, across lines, to its closing quote)`
	}
	return is
}
