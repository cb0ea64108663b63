package plan

import (
	"errors"
	"fmt"
	"strings"
)

// JSON paths, as expectations (json, json_match, json_absent) and captures
// write them: dotted keys, array indexes as a segment or in brackets —
// "data.items[0].id", "items.0.id" — with an optional JSONPath root "$."
// ("$.release"); "$" alone is the whole document. Nothing more of JSONPath:
// no wildcards, filters, recursive descent or quoted keys. domain/expect
// reads a response with the same segments.

// JSONPathSegments splits path into its keys and indexes: "$.a.b[0]" →
// [a b 0]; "" and "$" are the whole document (no segment). A path outside
// the grammar is an error saying what is wrong.
func JSONPathSegments(path string) ([]string, error) {
	rest := path
	switch {
	case rest == "$":
		return nil, nil
	case strings.HasPrefix(rest, "$.."):
		return nil, errors.New("recursive descent (..) is not supported: write the whole path from the root")
	case strings.HasPrefix(rest, "$."):
		rest = rest[2:]
		if rest == "" {
			return nil, errors.New("nothing after $.")
		}
	case strings.HasPrefix(rest, "$["):
		rest = rest[1:]
	}
	var segs []string
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
				return nil, errors.New("wildcards ([*]) are not supported: name one element, e.g. items[0]")
			case !isIndex(idx):
				return nil, fmt.Errorf("[%s]: brackets take an array index (items[0]); write keys with dots (data.release)", idx)
			}
			segs = append(segs, idx)
			i += end + 1
			if i < len(rest) && rest[i] != '.' && rest[i] != '[' {
				return nil, fmt.Errorf("%q after ]: write . before a key (items[0].id)", rest[i:])
			}
		case ']':
			return nil, errors.New("] without an opening [")
		case '.':
			return nil, errors.New("an empty key (a leading, doubled or trailing dot)")
		default:
			j := i
			for j < len(rest) && !strings.ContainsRune(".[]", rune(rest[j])) {
				j++
			}
			seg := rest[i:j]
			if seg == "*" {
				return nil, errors.New("wildcards (*) are not supported: name one key or element")
			}
			segs = append(segs, seg)
			i = j
		}
		if i < len(rest) && rest[i] == '.' {
			i++
			if i == len(rest) {
				return nil, errors.New("an empty key (a leading, doubled or trailing dot)")
			}
			if rest[i] == '.' || rest[i] == '[' {
				return nil, errors.New("an empty key (a leading, doubled or trailing dot)")
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
	if strings.TrimSpace(path) == "" {
		return errors.New("a JSON path is required (e.g. release, data.items[0].id, $.release)")
	}
	if _, err := JSONPathSegments(path); err != nil {
		return fmt.Errorf("%q is not a JSON path: %w; e.g. release, data.items[0].id, $.data.release", path, err)
	}
	return nil
}
