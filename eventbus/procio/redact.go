package procio

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"sort"
	"strings"
)

// MinSecretLen is the shortest value that is redacted: shorter values
// ("1", "on", "dev") would blank out ordinary text everywhere, and are no
// real secrets.
const MinSecretLen = 4

// secretWords mark an environment variable name as holding a secret.
var secretWords = []string{"SECRET", "TOKEN", "PASSWORD", "PASSWD", "KEY", "CREDENTIAL", "DSN"}

// SecretName reports whether the variable name (with its value) holds a
// secret: its name contains SECRET, TOKEN, PASSWORD, PASSWD, KEY,
// CREDENTIAL or DSN, or it contains URL and the value is a URL with a user
// or password in it.
func SecretName(name, value string) bool {
	n := strings.ToUpper(name)
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	if strings.Contains(n, "URL") {
		if u, err := url.Parse(value); err == nil && u.User != nil {
			return true
		}
	}
	return false
}

// Redactor replaces secret values, in the forms a step is likely to print
// them, with [REDACTED:NAME].
type Redactor struct {
	pairs []redactPair
}

type redactPair struct{ form, name string }

// NewRedactor redacts the values of secrets (name → value). Values shorter
// than MinSecretLen are not redacted. Each value is redacted as written, in
// base64 (standard and URL alphabets, padded and not) and JSON-escaped.
func NewRedactor(secrets map[string]string) *Redactor {
	r := &Redactor{}
	seen := map[string]bool{}
	add := func(form, name string) {
		if len(form) < MinSecretLen || seen[form] {
			return
		}
		seen[form] = true
		r.pairs = append(r.pairs, redactPair{form, name})
	}
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		v := secrets[name]
		if len(v) < MinSecretLen {
			continue
		}
		add(v, name)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			add(enc.EncodeToString([]byte(v)), name)
		}
		for _, html := range []bool{true, false} {
			var b bytes.Buffer
			e := json.NewEncoder(&b)
			e.SetEscapeHTML(html)
			if e.Encode(v) == nil {
				s := strings.TrimSuffix(b.String(), "\n")
				add(strings.TrimSuffix(strings.TrimPrefix(s, `"`), `"`), name)
			}
		}
	}
	// Longest first: a form that contains another is replaced whole.
	sort.SliceStable(r.pairs, func(i, j int) bool { return len(r.pairs[i].form) > len(r.pairs[j].form) })
	return r
}

// Redact returns s with every secret form replaced.
func (r *Redactor) Redact(s string) string {
	if r == nil {
		return s
	}
	for _, p := range r.pairs {
		if strings.Contains(s, p.form) {
			s = strings.ReplaceAll(s, p.form, "[REDACTED:"+p.name+"]")
		}
	}
	return s
}

// Empty reports a redactor with nothing to redact.
func (r *Redactor) Empty() bool { return r == nil || len(r.pairs) == 0 }

// redactedError keeps the wrapped error for errors.Is/As but shows the
// redacted text.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// RedactError is err with its text redacted; errors.Is and errors.As still
// see err. nil stays nil, and an error with nothing to redact is returned as is.
func (r *Redactor) RedactError(err error) error {
	if err == nil || r.Empty() {
		return err
	}
	if msg := r.Redact(err.Error()); msg != err.Error() {
		return &redactedError{msg, err}
	}
	return err
}
