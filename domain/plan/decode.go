package plan

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// decoder fills a Plan from the YAML AST by reflection over the yaml tags,
// collecting every problem instead of stopping at the first: unknown fields
// (with a suggestion), wrong node kinds, bad numbers and durations. It
// records the node of every path it visits so that later checks can point
// at the line and column of what they complain about.
type decoder struct {
	anchors map[string]ast.Node
	nodes   map[string]ast.Node // value node by path ("" is the document)
	keys    map[string]ast.Node // key node by path
	bad     map[string]bool     // paths with a decode error
	// unknownIn marks mappings that have an unknown field.
	unknownIn map[string]bool
	issues    []Issue
	depth     int
	// values counts the values decoded, aliases expanded: an alias bomb
	// stops at maxValues (tooMany) instead of filling the memory.
	values  int
	tooMany bool
	// tooDeep: "nested too deeply" was reported (once is enough).
	tooDeep bool
	// merging holds the mappings whose merge keys (<<) are being expanded:
	// a mapping met again merges itself.
	merging map[ast.Node]bool
	// approvalTimeout is approval.timeout (Plan.ApprovalTimeout).
	approvalTimeout Duration
}

func newDecoder() *decoder {
	return &decoder{
		anchors:   map[string]ast.Node{},
		nodes:     map[string]ast.Node{},
		keys:      map[string]ast.Node{},
		bad:       map[string]bool{},
		unknownIn: map[string]bool{},
		merging:   map[ast.Node]bool{},
	}
}

const maxDepth = 64

// maxValues bounds the values a plan expands to with its aliases; plans
// have a few hundred.
const maxValues = 20_000

// spend counts one value at path; false once the plan has too many.
func (d *decoder) spend(n ast.Node, path string) bool {
	d.values++
	if d.values <= maxValues {
		return true
	}
	if !d.tooMany {
		d.tooMany = true
		d.fail(n, path, "the plan has more than %d values, counting each alias *name as all its anchor &name holds: refused (an alias bomb?); repeat less through aliases", maxValues)
	}
	d.bad[path] = true
	return false
}

// failDeep reports nesting beyond maxDepth, once per plan.
func (d *decoder) failDeep(n ast.Node, path, format string, args ...any) {
	if d.tooDeep {
		d.bad[path] = true
		return
	}
	d.tooDeep = true
	d.fail(n, path, format, args...)
}

var (
	durationType  = reflect.TypeOf(Duration{})
	triggerType   = reflect.TypeOf(TriggerCondition{})
	stepType      = reflect.TypeOf(Step{})
	stepSliceType = reflect.TypeOf([]Step(nil))
)

// approvalTimeoutPath is the reserved key of the approval section: the
// approval timeout, not a role.
const approvalTimeoutPath = "approval." + ApprovalTimeoutKey

// rollbackStepsPath is the one place a single text is accepted for a list
// of steps: the seed writes its rollback steps as one numbered text.
const rollbackStepsPath = "rollback_plan.rollback_steps"

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func joinIndex(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// parent is the path one level up: a.b[2].c → a.b[2] → a.b → a → "".
func parent(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[:i]
	}
	return ""
}

// collectAnchors registers every anchor of the document before decoding so
// that an alias resolves wherever its anchor is.
func (d *decoder) collectAnchors(n ast.Node) {
	ast.Walk(anchorVisitor{d}, n)
}

type anchorVisitor struct{ d *decoder }

func (v anchorVisitor) Visit(n ast.Node) ast.Visitor {
	if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil {
		v.d.anchors[a.Name.GetToken().Value] = a.Value
	}
	return v
}

// resolve strips tags and anchors and follows aliases.
func (d *decoder) resolve(n ast.Node) ast.Node {
	for i := 0; i < maxDepth && n != nil; i++ {
		switch v := n.(type) {
		case *ast.TagNode:
			n = v.Value
		case *ast.AnchorNode:
			n = v.Value
		case *ast.AliasNode:
			if v.Value == nil {
				return nil
			}
			t, ok := d.anchors[v.Value.GetToken().Value]
			if !ok {
				return nil
			}
			n = t
		default:
			return n
		}
	}
	return n
}

func isNull(n ast.Node) bool {
	if n == nil {
		return true
	}
	_, ok := n.(*ast.NullNode)
	return ok
}

// nodePos is where a node starts: a block mapping starts at its first key.
func nodePos(n ast.Node) (int, int) {
	switch v := n.(type) {
	case nil:
		return 0, 0
	case *ast.MappingNode:
		if !v.IsFlowStyle && len(v.Values) > 0 {
			return nodePos(v.Values[0])
		}
	case *ast.MappingValueNode:
		return nodePos(v.Key)
	case *ast.MappingKeyNode:
		return nodePos(v.Value)
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return 0, 0
	}
	return tk.Position.Line, tk.Position.Column
}

// scalarText is a scalar as written (quotes removed); ok is false for
// mappings and sequences.
func scalarText(n ast.Node) (string, bool) {
	switch v := n.(type) {
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		if v.Value == nil {
			return "", true
		}
		return v.Value.Value, true
	case *ast.NullNode:
		return "", true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return n.GetToken().Value, true
	}
	return "", false
}

// describeNode names what was written, for "expected X, got Y" messages.
func describeNode(n ast.Node) string {
	switch v := n.(type) {
	case nil:
		return "nothing (an alias *name without its anchor &name?)"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping (key: value)"
	case *ast.SequenceNode:
		return "a list"
	case *ast.NullNode:
		return "nothing (null)"
	case *ast.BoolNode:
		return "the boolean " + v.GetToken().Value
	case *ast.IntegerNode, *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "the number " + n.GetToken().Value
	case *ast.StringNode, *ast.LiteralNode:
		s, _ := scalarText(n)
		if outOfRange(n) {
			return "the number " + s + ", which is out of range"
		}
		return "the text " + strconv.Quote(s)
	}
	return "a " + n.Type().String()
}

// outOfRange: an unquoted number too large for the YAML parser, which
// then reads it as a text.
func outOfRange(n ast.Node) bool {
	sn, ok := n.(*ast.StringNode)
	if !ok || sn.Token == nil || sn.Token.Type != token.StringType || sn.Value == "" || !strings.ContainsRune("+-.0123456789", rune(sn.Value[0])) {
		return false
	}
	digits := strings.TrimLeft(strings.ReplaceAll(sn.Value, "_", ""), "+-")
	if len(digits) > 18 && strings.Trim(digits, "0123456789") == "" {
		return true
	}
	_, err := strconv.ParseFloat(digits, 64)
	return errors.Is(err, strconv.ErrRange)
}

func (d *decoder) fail(n ast.Node, path, format string, args ...any) {
	line, col := nodePos(n)
	value, _ := scalarText(n)
	d.bad[path] = true
	d.issues = append(d.issues, Issue{Path: path, Line: line, Column: col, Value: value, Message: fmt.Sprintf(format, args...)})
}

func (d *decoder) warnNode(n ast.Node, path, format string, args ...any) {
	line, col := nodePos(n)
	value, _ := scalarText(n)
	d.issues = append(d.issues, Issue{Path: path, Line: line, Column: col, Value: value, Message: fmt.Sprintf(format, args...), Warning: true})
}

// entries lists a mapping's key/value pairs with merge keys (<<) expanded:
// explicit keys win over merged ones. path names n in issues.
func (d *decoder) entries(n ast.Node, path string) ([]*ast.MappingValueNode, bool) {
	var values []*ast.MappingValueNode
	switch v := n.(type) {
	case *ast.MappingNode:
		values = v.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{v}
	default:
		return nil, false
	}
	var out, merged []*ast.MappingValueNode
	explicit := map[string]bool{}
	for _, mv := range values {
		if mv.Key != nil && mv.Key.IsMergeKey() {
			src := d.resolve(mv.Value)
			var srcs []ast.Node
			if seq, ok := src.(*ast.SequenceNode); ok {
				for _, s := range seq.Values {
					srcs = append(srcs, d.resolve(s))
				}
			} else {
				srcs = append(srcs, src)
			}
			for _, s := range srcs {
				if s == nil || !d.spend(mv, path) {
					continue
				}
				if d.merging[s] || s == n {
					d.fail(mv, path, "merge key << merges itself (through an alias to the mapping it is in or merges): a mapping cannot include itself")
					continue
				}
				d.merging[s] = true
				if es, ok := d.entries(s, path); ok {
					merged = append(merged, es...)
				}
				delete(d.merging, s)
			}
			continue
		}
		explicit[d.keyText(mv.Key)] = true
		out = append(out, mv)
	}
	for _, mv := range merged {
		k := d.keyText(mv.Key)
		if !explicit[k] {
			explicit[k] = true
			out = append(out, mv)
		}
	}
	return out, true
}

func (d *decoder) keyText(k ast.MapKeyNode) string {
	var n ast.Node = k
	if mk, ok := k.(*ast.MappingKeyNode); ok {
		n = mk.Value
	}
	r := d.resolve(n)
	if s, ok := scalarText(r); ok {
		return s
	}
	if r == nil {
		// An alias to no anchor, or no key at all: the key as written.
		if n == nil {
			return ""
		}
		return n.String()
	}
	return r.String()
}

// decode fills v from n; path names n in issues.
func (d *decoder) decode(n ast.Node, v reflect.Value, path string) {
	d.depth++
	defer func() { d.depth-- }()
	if d.depth > maxDepth {
		d.failDeep(n, path, "nested too deeply (more than %d levels): aliases that refer to themselves are not allowed", maxDepth)
		return
	}
	if !d.spend(n, path) {
		return
	}
	if al, ok := n.(*ast.AliasNode); ok {
		if r := d.resolve(n); r == nil {
			d.fail(n, path, "alias %s refers to no anchor: define &name before *name", al.String())
			return
		}
	}
	n = d.resolve(n)
	if n == nil {
		n = ast.Null(nil)
	}
	d.nodes[path] = n
	if isNull(n) {
		return
	}

	switch v.Type() {
	case durationType:
		s, ok := scalarText(n)
		if !ok {
			d.fail(n, path, "must be a duration such as 30s, 5m, 1h30m, \"2 hours\" or \"30 minutes\", got %s", describeNode(n))
			return
		}
		dur, err := ParseDuration(s)
		if err != nil {
			d.fail(n, path, "%s", err.Error())
			return
		}
		v.Set(reflect.ValueOf(Duration{Duration: dur, Raw: s}))
		return
	case triggerType:
		if s, ok := scalarText(n); ok {
			v.Set(reflect.ValueOf(TriggerCondition{Text: s}))
			return
		}
		if _, ok := n.(*ast.SequenceNode); ok {
			d.fail(n, path, "a trigger condition is a text (shown to people) or {metric, op, value} (watched), got a list")
			return
		}
	case stepType:
		if s, ok := scalarText(n); ok {
			v.Set(reflect.ValueOf(Step{Text: s}))
			return
		}
		if _, ok := n.(*ast.SequenceNode); ok {
			d.fail(n, path, "a step is a mapping with name, timeout, retries, idempotent and one of %s (or, in rollback_steps, a text: a described manual step), got a list", stepKindsText(false))
			return
		}
	case stepSliceType:
		if s, ok := scalarText(n); ok && path == rollbackStepsPath {
			texts := SplitNumbered(s)
			steps := make([]Step, len(texts))
			for i, t := range texts {
				steps[i] = Step{Text: t}
			}
			v.Set(reflect.ValueOf(steps))
			d.warnNode(n, path, "rollback steps are written as one text, read as %d described manual step(s) by their numbering (1. 2. ...): a rollback shows them to people and runs none of them; to have a step run, write rollback_steps as a list of steps, each with one of %s", len(steps), stepKindsText(false))
			return
		}
	}

	switch v.Kind() {
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		d.decode(n, e.Elem(), path)
		v.Set(e)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		seq, ok := n.(*ast.SequenceNode)
		if !ok {
			d.fail(n, path, "must be a list (\"- item\" lines or [a, b]), got %s", describeNode(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(seq.Values), len(seq.Values))
		for i, e := range seq.Values {
			d.decode(e, s.Index(i), joinIndex(path, i))
		}
		v.Set(s)
	case reflect.Map:
		es, ok := d.entries(n, path)
		if !ok {
			d.fail(n, path, "must be a mapping (key: value), got %s", describeNode(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(es))
		for _, e := range es {
			k := d.keyText(e.Key)
			kp := joinKey(path, k)
			d.keys[kp] = e.Key
			if kp == approvalTimeoutPath {
				// Reserved key of the approval section: a duration, not a role.
				d.decode(e.Value, reflect.ValueOf(&d.approvalTimeout).Elem(), kp)
				continue
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(e.Value, ev, kp)
			m.SetMapIndex(reflect.ValueOf(k), ev)
		}
		v.Set(m)
	case reflect.String:
		s, ok := scalarText(n)
		if !ok {
			d.fail(n, path, "must be a text, got %s", describeNode(n))
			return
		}
		v.SetString(s)
	case reflect.Int, reflect.Int64, reflect.Int32:
		in, ok := n.(*ast.IntegerNode)
		if !ok {
			d.fail(n, path, "must be a whole number, got %s", describeNode(n))
			return
		}
		switch x := in.GetValue().(type) {
		case int64:
			if v.OverflowInt(x) {
				d.fail(n, path, "%d is too large", x)
				return
			}
			v.SetInt(x)
		case uint64:
			if x > math.MaxInt64 || v.OverflowInt(int64(x)) {
				d.fail(n, path, "%d is too large", x)
				return
			}
			v.SetInt(int64(x))
		}
	case reflect.Float64, reflect.Float32:
		switch x := n.(type) {
		case *ast.IntegerNode:
			switch i := x.GetValue().(type) {
			case int64:
				v.SetFloat(float64(i))
			case uint64:
				v.SetFloat(float64(i))
			}
		case *ast.FloatNode:
			v.SetFloat(x.Value)
		default:
			d.fail(n, path, "must be a number, got %s", describeNode(n))
		}
	case reflect.Bool:
		b, ok := n.(*ast.BoolNode)
		if !ok {
			d.fail(n, path, "must be true or false, got %s", describeNode(n))
			return
		}
		v.SetBool(b.Value)
	case reflect.Interface:
		if x := d.toAny(n, path); x != nil {
			v.Set(reflect.ValueOf(x))
		}
	default:
		d.fail(n, path, "cannot be decoded into %s", v.Type())
	}
}

func (d *decoder) decodeStruct(n ast.Node, v reflect.Value, path string) {
	t := v.Type()
	fields := YAMLFields(t)
	es, ok := d.entries(n, path)
	if !ok {
		names := make([]string, len(fields))
		for i, f := range fields {
			names[i] = f.Name
		}
		what := "the fields " + strings.Join(names, ", ")
		if len(names) == 1 {
			what = "the field " + names[0]
		}
		d.fail(n, path, "must be a mapping with %s, got %s", what, describeNode(n))
		return
	}
	for _, e := range es {
		key := d.keyText(e.Key)
		kp := joinKey(path, key)
		idx := -1
		for _, f := range fields {
			if f.Name == key {
				idx = f.Index
				break
			}
		}
		if idx < 0 && path == "" && strings.HasPrefix(key, ExtensionPrefix) {
			// Extension fields (as in Compose files): ignored, handy to hold
			// anchors (x-defaults: &d {...}). Only at the top level.
			continue
		}
		if idx < 0 {
			d.unknownField(e.Key, key, path, fields)
			continue
		}
		d.keys[kp] = e.Key
		d.decode(e.Value, v.Field(idx), kp)
	}
}

func (d *decoder) unknownField(k ast.Node, key, path string, fields []YAMLField) {
	names := make([]string, len(fields))
	best, bestDist := "", 1<<30
	for i, f := range fields {
		names[i] = f.Name
		if dist := editDistance(strings.ToLower(key), f.Name); dist < bestDist {
			best, bestDist = f.Name, dist
		}
	}
	where := "at the top level"
	if path != "" {
		where = "in " + path
	}
	hint := ""
	if bestDist <= 2 || (bestDist <= 3 && len(key) > 6) {
		hint = fmt.Sprintf("did you mean %q? ", best)
	}
	kp := joinKey(path, key)
	line, col := nodePos(k)
	d.bad[kp] = true
	d.unknownIn[path] = true
	extra := ""
	if path == "" {
		extra = " (or an x- extension field, which is ignored)"
	}
	d.issues = append(d.issues, Issue{
		Path: kp, Line: line, Column: col, Value: key,
		Message: fmt.Sprintf("unknown field %q %s: %sallowed fields are %s%s", key, where, hint, strings.Join(names, ", "), extra),
	})
}

// toAny converts free-form values (JSON bodies and expectations) with the
// same Go types yaml.Unmarshal gives, aliases resolved.
func (d *decoder) toAny(n ast.Node, path string) any {
	d.depth++
	defer func() { d.depth-- }()
	n = d.resolve(n)
	if n != nil {
		d.nodes[path] = n
	}
	if d.depth > maxDepth {
		d.failDeep(n, path, "nested too deeply (more than %d levels): aliases that refer to themselves are not allowed", maxDepth)
		return nil
	}
	if !d.spend(n, path) {
		return nil
	}
	switch v := n.(type) {
	case nil, *ast.NullNode:
		return nil
	case *ast.SequenceNode:
		out := make([]any, len(v.Values))
		for i, e := range v.Values {
			out[i] = d.toAny(e, joinIndex(path, i))
		}
		return out
	case *ast.MappingNode, *ast.MappingValueNode:
		es, _ := d.entries(n, path)
		out := make(map[string]any, len(es))
		for _, e := range es {
			k := d.keyText(e.Key)
			out[k] = d.toAny(e.Value, joinKey(path, k))
		}
		return out
	case *ast.LiteralNode:
		s, _ := scalarText(v)
		return s
	case ast.ScalarNode:
		return v.GetValue()
	}
	return n.String()
}

// numbered finds "1." / "2)" style item numbers preceded by the start of
// the text or whitespace.
var numbered = regexp.MustCompile(`(?:^|\s)([0-9]{1,3})[.)]\s+`)

// SplitNumbered splits a numbered text ("1. \"a\" 2. \"b\"", the seed's
// rollback_steps, which YAML folds into one line) into its items, in order.
// Only numbers counting up from 1 split, so "v2. something" inside an item
// stays. Quotes around a whole item are removed. A text without numbering
// is one item.
func SplitNumbered(s string) []string {
	type cut struct{ start, body int }
	var cuts []cut
	next := 1
	for _, m := range numbered.FindAllStringSubmatchIndex(s, -1) {
		num, _ := strconv.Atoi(s[m[2]:m[3]])
		if num != next {
			continue
		}
		cuts = append(cuts, cut{start: m[2], body: m[1]})
		next++
	}
	if len(cuts) == 0 || strings.TrimSpace(s[:cuts[0].start]) != "" {
		if t := unquote(strings.TrimSpace(s)); t != "" {
			return []string{t}
		}
		return nil
	}
	out := make([]string, 0, len(cuts))
	for i, c := range cuts {
		end := len(s)
		if i+1 < len(cuts) {
			end = cuts[i+1].start
		}
		if t := unquote(strings.TrimSpace(s[c.body:end])); t != "" {
			out = append(out, t)
		}
	}
	return out
}

func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		inner := s[1 : len(s)-1]
		if !strings.ContainsRune(inner, rune(s[0])) {
			return inner
		}
	}
	return s
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// sortIssues orders issues by position; issues without one go last.
func sortIssues(issues []Issue) {
	sort.SliceStable(issues, func(i, j int) bool {
		a, b := issues[i], issues[j]
		if (a.Line == 0) != (b.Line == 0) {
			return b.Line == 0
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}
