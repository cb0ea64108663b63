package plan

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/theory/jsonpath"
	"github.com/theory/jsonpath/spec"
)

// JSON paths, as expectations (json, json_match, json_absent) and captures
// write them, in one of two forms:
//
//   - A path that starts with $ is an RFC 9535 JSONPath query, parsed by
//     github.com/theory/jsonpath: "$.release", "$.data.items[0].id",
//     "$..id" (every id at any depth), "$.items[?@.sku=='A1'].price" (a
//     filter), "$.items[*].status", "$['a key']"; "$" alone is the whole
//     document.
//   - Any other path is the short form the seed writes: keys separated by
//     dots, array indexes as a segment or in brackets — "release",
//     "data.items[0].id", "items.0.id", "[0].id". It is translated to the
//     RFC 9535 query of the same names and indexes (a number segment
//     selects the array element, or the object member of that name), so
//     the library evaluates both forms. A top-level key that itself holds
//     dots is found when written whole ("a.b" is doc["a.b"] when the
//     document has that key, else doc["a"]["b"]).
//
// ParseJSONPath is the one parser: validation calls it to refuse a path,
// and domain/expect selects a response's values with the path it returns.
// What an expectation or capture makes of zero or several selected values
// is domain/expect's rule (see plan.Expect and plan.Capture).

// JSONPath is a parsed JSON path.
type JSONPath struct {
	text  string
	query *jsonpath.Path
	// whole is the short form's text as one top-level key, tried before
	// query (nil: a path of one key, or the RFC 9535 form).
	whole *jsonpath.Path
	// descendants counts the query's descendant segments (..).
	descendants int
}

// ParseJSONPath parses a JSON path of either form. An error says what is
// wrong and where: the library's message with the position for the RFC
// 9535 form, the segment at fault for the short form.
func ParseJSONPath(text string) (*JSONPath, error) {
	if strings.TrimSpace(text) == "" {
		return nil, errors.New("a JSON path is required (e.g. release, data.items[0].id, $.release, $..id)")
	}
	if strings.HasPrefix(text, "$") {
		q, err := jsonpath.Parse(text)
		if err != nil {
			// "$.items.0.id", "$.a-b": the short form written after $.
			if short, ok := strings.CutPrefix(text, "$."); ok {
				if _, serr := shortPathSegments(short); serr == nil {
					return nil, fmt.Errorf("JSONPath %q does not parse: %w; write the short form without $ (%s), or RFC 9535 with an index in brackets and other keys quoted ($.items[0]['a-b'])", text, err, short)
				}
			}
			return nil, fmt.Errorf("JSONPath %q does not parse: %w", text, err)
		}
		n := descendants(text)
		if n > MaxJSONPathDescendants {
			return nil, fmt.Errorf("JSONPath %q has %d descendant segments (..): at most %d, each multiplies the values a deeply nested response yields", text, n, MaxJSONPathDescendants)
		}
		return &JSONPath{text: text, query: q, descendants: n}, nil
	}
	segs, err := shortPathSegments(text)
	if err != nil {
		return nil, fmt.Errorf("%q is not a JSON path: %w; e.g. release, data.items[0].id, or an RFC 9535 JSONPath from $ ($.data.release, $..id)", text, err)
	}
	p := &JSONPath{text: text, query: jsonpath.New(spec.Query(true, segs...))}
	if len(segs) > 1 {
		p.whole = jsonpath.New(spec.Query(true, spec.Child(spec.Name(text))))
	}
	return p, nil
}

// MaxJSONPathDescendants bounds the descendant segments (..) of a path,
// its filters' included. RFC 9535 keeps every duplicate, so each one
// multiplies the values selected by the document's depth: "$..*..*..*..*"
// on a response nested 80 levels deep selects 1.5 million values and takes
// seconds, which a health check must not.
const MaxJSONPathDescendants = 2

// descendants counts the ".." of an RFC 9535 path outside its string
// literals (the library has parsed it: each is a descendant segment).
func descendants(text string) int {
	n := 0
	var quote byte
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case quote != 0 && c == '\\':
			i++
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
		case c == '\'' || c == '"':
			quote = c
		case c == '.' && i+1 < len(text) && text[i+1] == '.':
			n++
			i++
		}
	}
	return n
}

// String is the path as written.
func (p *JSONPath) String() string { return p.text }

// Query is the path as an RFC 9535 query: "$['data']['items'][0,'0']".
func (p *JSONPath) Query() string { return p.query.String() }

// MaxJSONDepth is how deeply a document may nest for a path with a
// descendant segment (..) to search it; deeper is an error (a path
// without one reads any document).
const MaxJSONDepth = 100

// Select returns the values the path selects in doc (a document as
// encoding/json decodes it), each with its RFC 9535 normalized path, in
// document order: none when the path finds nothing. A path with a
// descendant segment on a document nested deeper than MaxJSONDepth is an
// error: each level multiplies what it would have to visit.
func (p *JSONPath) Select(doc any) (jsonpath.LocatedNodeList, error) {
	if p.descendants > 0 && deeperThan(doc, MaxJSONDepth) {
		return nil, fmt.Errorf("the document nests deeper than %d levels: a path with .. searches at most %d", MaxJSONDepth, MaxJSONDepth)
	}
	if p.whole != nil {
		if n := p.whole.SelectLocated(doc); len(n) > 0 {
			return n, nil
		}
	}
	return p.query.SelectLocated(doc), nil
}

// deeperThan reports whether v nests arrays and objects more than depth
// levels deep.
func deeperThan(v any, depth int) bool {
	switch x := v.(type) {
	case map[string]any:
		if depth == 0 {
			return true
		}
		for _, e := range x {
			if deeperThan(e, depth-1) {
				return true
			}
		}
	case []any:
		if depth == 0 {
			return true
		}
		for _, e := range x {
			if deeperThan(e, depth-1) {
				return true
			}
		}
	}
	return false
}

// maxIndex is the largest array index RFC 9535 allows (I-JSON's 2^53-1).
const maxIndex = 1<<53 - 1

// shortPathSegments translates a short-form path ("data.items[0].id") to
// the RFC 9535 segments of the same keys and indexes. A segment of digits
// selects the element of that index in an array and the member of that
// name in an object ([0,'0']), as the short form always has.
func shortPathSegments(path string) ([]*spec.Segment, error) {
	var segs []*spec.Segment
	add := func(key string) {
		if n, err := strconv.ParseInt(key, 10, 64); err == nil && isIndex(key) && n <= maxIndex {
			segs = append(segs, spec.Child(spec.Index(int(n)), spec.Name(key)))
			return
		}
		segs = append(segs, spec.Child(spec.Name(key)))
	}
	rest := path
	for i := 0; i < len(rest); {
		switch rest[i] {
		case '[':
			end := strings.IndexByte(rest[i:], ']')
			if end < 0 {
				return nil, errors.New("[ without a closing ]")
			}
			idx := rest[i+1 : i+end]
			switch {
			case idx == "*":
				return nil, errors.New("[*] selects every element: that is JSONPath, start the path with $ ($.items[*].id)")
			case !isIndex(idx):
				return nil, fmt.Errorf("[%s]: brackets in a short path take an array index (items[0]); for quoted keys or filters write JSONPath from $ ($.items[?@.id=='a'])", idx)
			}
			add(idx)
			i += end + 1
			if i < len(rest) && rest[i] != '.' && rest[i] != '[' {
				return nil, fmt.Errorf("%q after ]: write . before a key (items[0].id)", rest[i:])
			}
		case ']':
			return nil, errors.New("] without an opening [")
		case '.':
			return nil, errors.New("an empty key (a leading, doubled or trailing dot; for recursive descent write JSONPath from $: $..id)")
		default:
			j := i
			for j < len(rest) && !strings.ContainsRune(".[]", rune(rest[j])) {
				j++
			}
			seg := rest[i:j]
			if seg == "*" {
				return nil, errors.New("* selects every key: that is JSONPath, start the path with $ ($.items.*)")
			}
			add(seg)
			i = j
		}
		if i < len(rest) && rest[i] == '.' {
			i++
			if i == len(rest) || rest[i] == '.' || rest[i] == '[' {
				return nil, errors.New("an empty key (a leading, doubled or trailing dot; for recursive descent write JSONPath from $: $..id)")
			}
		}
	}
	return segs, nil
}

func isIndex(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// CheckJSONPath says why path is not a JSON path expectations and
// captures can use (nil when it is); an empty path is an error too.
func CheckJSONPath(path string) error {
	_, err := ParseJSONPath(path)
	return err
}
