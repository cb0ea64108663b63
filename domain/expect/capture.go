package expect

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/kis-core/runbook/domain/plan"
)

// Capture takes one value from a response: a JSON path of the body or a
// header. A path that selects nothing, or null, or several values, is an
// error naming it (the values' locations, never the values: a capture is
// secret by default).
func Capture(c plan.Capture, o Observation) (any, error) {
	if c.Header != "" {
		v := o.Header.Get(c.Header)
		if v == "" {
			return nil, fmt.Errorf("header %s is missing from the response", c.Header)
		}
		return v, nil
	}
	doc, err := DecodeJSON(o.Body)
	if err != nil {
		return nil, fmt.Errorf("JSON path %s: the response body is not JSON: %w", c.JSON, err)
	}
	got, err := selectPath(doc, c.JSON)
	if err != nil {
		return nil, fmt.Errorf("JSON path %s: %w", c.JSON, err)
	}
	switch len(got.values) {
	case 0:
		return nil, fmt.Errorf("JSON path %s is missing from the response", c.JSON)
	case 1:
	default:
		return nil, fmt.Errorf("JSON path %s selects %d values (%s): a capture takes one, narrow the path (an index [0], or a filter that matches one)", c.JSON, len(got.values), Show(got.where))
	}
	v := got.values[0]
	if v == nil {
		return nil, fmt.Errorf("JSON path %s is null in the response", c.JSON)
	}
	return v, nil
}

// Vars are the values captured so far in one smoke run, and the ${name}
// expansion of requests with them. Secret values (captures not marked
// secret: false, and every ${env:NAME} used) are remembered so that Redact
// can take them out of anything written to events or logs.
type Vars struct {
	env     func(name string) (string, bool)
	values  map[string]varValue
	secrets map[string]string // value → the [label] that replaces it
}

type varValue struct {
	raw    any // as decoded from the response
	text   string
	secret bool
}

// NewVars starts an empty set; env reads ${env:NAME} (nil: none set).
func NewVars(env func(name string) (string, bool)) *Vars {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	return &Vars{env: env, values: map[string]varValue{}, secrets: map[string]string{}}
}

// Set records a captured value.
func (v *Vars) Set(name string, raw any, secret bool) {
	t := Text(raw)
	v.values[name] = varValue{raw: raw, text: t, secret: secret}
	if secret && t != "" {
		v.secrets[t] = "[" + name + "]"
	}
}

// minSecretEnv is the shortest value SecretEnv hides: shorter ones ("1",
// "on") would blank out ordinary text, and are no real secrets (the
// deployer's steps.MinSecretLen).
const minSecretEnv = 4

// SecretEnv marks the value of the environment variable name as secret
// without using it (values shorter than 4 characters excepted): Redact
// replaces it by [env:NAME], like the values of the ${env:NAME} a step uses.
func (v *Vars) SecretEnv(name string) {
	if s, ok := v.env(name); ok && len(s) >= minSecretEnv {
		v.secrets[s] = "[" + plan.EnvRefPrefix + name + "]"
	}
}

// Has reports whether name has a value (env references always "have" one;
// whether the variable is set is found when expanding).
func (v *Vars) Has(name string) bool {
	if strings.HasPrefix(name, plan.EnvRefPrefix) {
		return true
	}
	_, ok := v.values[name]
	return ok
}

func (v *Vars) lookup(name string) (string, bool) {
	if env, ok := strings.CutPrefix(name, plan.EnvRefPrefix); ok {
		s, ok := v.env(env)
		if ok && s != "" {
			v.secrets[s] = "[" + name + "]"
		}
		return s, ok
	}
	x, ok := v.values[name]
	return x.text, ok
}

// Refs lists the names r refers to with ${name}, each once, in order.
func Refs(r plan.Request) ([]string, error) {
	var out []string
	var errs []error
	plan.RequestTemplates(r, func(path, text string) {
		refs, err := plan.TemplateRefs(text)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
		for _, n := range refs {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	})
	return out, errors.Join(errs...)
}

// Expand returns r with every ${name} replaced: in the url, header values,
// the body and the json body's strings. A json string that is exactly one
// reference ("${count}") becomes the captured value itself, with its JSON
// type (a number stays a number); elsewhere values are inserted as text.
// An unknown name, or an env variable that is not set, is an error naming it.
func (v *Vars) Expand(r plan.Request) (plan.Request, error) {
	var err error
	if r.URL, err = plan.ExpandTemplate(r.URL, v.lookup); err != nil {
		return r, fmt.Errorf("url: %w", err)
	}
	if len(r.Headers) > 0 {
		h := make(map[string]string, len(r.Headers))
		for _, k := range sortedKeys(r.Headers) {
			if h[k], err = plan.ExpandTemplate(r.Headers[k], v.lookup); err != nil {
				return r, fmt.Errorf("header %s: %w", k, err)
			}
		}
		r.Headers = h
	}
	if r.Body, err = plan.ExpandTemplate(r.Body, v.lookup); err != nil {
		return r, fmt.Errorf("body: %w", err)
	}
	if r.JSON != nil {
		if r.JSON, err = v.expandJSON("json", r.JSON); err != nil {
			return r, err
		}
	}
	return r, nil
}

func (v *Vars) expandJSON(path string, x any) (any, error) {
	switch t := x.(type) {
	case string:
		if strings.HasPrefix(t, "${") && strings.HasSuffix(t, "}") && strings.Count(t, "${") == 1 {
			name := t[2 : len(t)-1]
			if val, ok := v.values[name]; ok {
				return val.raw, nil
			}
		}
		s, err := plan.ExpandTemplate(t, v.lookup)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return s, nil
	case map[string]any:
		out := make(map[string]any, len(t))
		for _, k := range sortedKeys(t) {
			e, err := v.expandJSON(path+"."+k, t[k])
			if err != nil {
				return nil, err
			}
			out[k] = e
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			var err error
			if out[i], err = v.expandJSON(fmt.Sprintf("%s[%d]", path, i), e); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return x, nil
}

// Redact replaces every secret value known so far in s by its [name]
// (longest values first, so a value containing another is replaced whole).
func (v *Vars) Redact(s string) string {
	if len(v.secrets) == 0 || s == "" {
		return s
	}
	vals := make([]string, 0, len(v.secrets))
	for k := range v.secrets {
		vals = append(vals, k)
	}
	slices.SortFunc(vals, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b))
	})
	for _, val := range vals {
		s = strings.ReplaceAll(s, val, v.secrets[val])
		// Show cuts long values: their shown prefix goes too.
		if r := []rune(val); len(r) > maxShown {
			s = strings.ReplaceAll(s, string(r[:maxShown-1])+"…", v.secrets[val])
		}
	}
	return s
}
