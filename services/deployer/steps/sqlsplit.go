package steps

import "strings"

// SplitSQL splits a PostgreSQL script into statements at top-level
// semicolons, so that a failure can name its statement. It knows quoted
// strings ('...', E'...' with backslashes), quoted identifiers ("..."),
// dollar quotes ($$...$$, $tag$...$tag$), -- line comments and nested /* */
// comments. Empty statements (and comment-only ones) are dropped.
func SplitSQL(script string) []string {
	var out []string
	start := 0
	flush := func(end int) {
		st := strings.TrimSpace(script[start:end])
		if st != "" && !onlyComments(st) {
			out = append(out, st)
		}
		start = end + 1
	}
	for i := 0; i < len(script); i++ {
		c := script[i]
		switch {
		case c == ';':
			flush(i)
		case c == '\'':
			escapes := i > 0 && (script[i-1] == 'E' || script[i-1] == 'e')
			i = skipQuoted(script, i, '\'', escapes)
		case c == '"':
			i = skipQuoted(script, i, '"', false)
		case c == '-' && i+1 < len(script) && script[i+1] == '-':
			if j := strings.IndexByte(script[i:], '\n'); j >= 0 {
				i += j
			} else {
				i = len(script)
			}
		case c == '/' && i+1 < len(script) && script[i+1] == '*':
			depth := 0
			for ; i < len(script); i++ {
				if strings.HasPrefix(script[i:], "/*") {
					depth++
					i++
				} else if strings.HasPrefix(script[i:], "*/") {
					depth--
					i++
					if depth == 0 {
						break
					}
				}
			}
		case c == '$':
			if tag, ok := dollarTag(script[i:]); ok {
				if j := strings.Index(script[i+len(tag):], tag); j >= 0 {
					i += len(tag) + j + len(tag) - 1
				} else {
					i = len(script)
				}
			}
		}
	}
	if start < len(script) {
		flush(len(script))
	}
	return out
}

// skipQuoted returns the index of the closing quote of the quoted text
// opened at i (a doubled quote is part of the text).
func skipQuoted(s string, i int, q byte, backslash bool) int {
	for j := i + 1; j < len(s); j++ {
		switch {
		case backslash && s[j] == '\\':
			j++
		case s[j] == q && j+1 < len(s) && s[j+1] == q:
			j++
		case s[j] == q:
			return j
		}
	}
	return len(s)
}

// dollarTag reads $tag$ at the start of s ($1 parameters are no tags).
func dollarTag(s string) (string, bool) {
	for j := 1; j < len(s); j++ {
		c := s[j]
		switch {
		case c == '$':
			return s[:j+1], true
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80 || (j > 1 && c >= '0' && c <= '9'):
		default:
			return "", false
		}
	}
	return "", false
}

func onlyComments(st string) bool {
	for _, line := range strings.Split(st, "\n") {
		l := strings.TrimSpace(line)
		if l != "" && !strings.HasPrefix(l, "--") {
			return false
		}
	}
	return true
}
