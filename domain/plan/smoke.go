package plan

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// SmokeSuite is a named group of smoke tests run in order, the way the seed's
// smoke-tests.js groups them (testCriticalPaths, testApiEndpoints,
// testDatabaseConnections, testExternalIntegrations,
// testPerformanceBaseline). Values a step captures are visible to every
// later step, in this suite and in the suites after it.
type SmokeSuite struct {
	Name string `yaml:"name"`
	// Type is the type of the suite's steps that do not set their own:
	// smoke (default), regression or performance.
	Type  string      `yaml:"type"`
	Steps []SmokeTest `yaml:"steps"`
}

// SmokeStep is one smoke test in the order it runs: first test.smoke, then
// every suite's steps, suite by suite.
type SmokeStep struct {
	SmokeTest
	// Suite is the suite's name; empty for test.smoke.
	Suite string
	// Path is where the test is written, e.g. test.suites[0].steps[1].
	Path string
}

// EffectiveName is the test's name, or "METHOD url" when it has none.
func (s SmokeTest) EffectiveName() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Request.EffectiveMethod() + " " + s.Request.URL
}

// SmokeSteps lists every smoke test in the order they run, each with its
// effective type (its own, else its suite's, else smoke).
func (t Test) SmokeSteps() []SmokeStep {
	var out []SmokeStep
	for i, s := range t.Smoke {
		s.Type = s.EffectiveType()
		out = append(out, SmokeStep{SmokeTest: s, Path: joinIndex("test.smoke", i)})
	}
	for i, su := range t.Suites {
		for j, s := range su.Steps {
			s.Type = or(s.Type, or(su.Type, DefaultSmokeType))
			out = append(out, SmokeStep{SmokeTest: s, Suite: su.Name, Path: joinIndex(joinKey(joinIndex("test.suites", i), "steps"), j)})
		}
	}
	return out
}

// --- templates: ${name} in requests ---

// A template is a text with ${name} references: name is a value an earlier
// step captured, or env:NAME, an environment variable of the tester. $${
// writes a literal ${. A $ not followed by { is itself.
var (
	varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// EnvRefPrefix marks a template reference to an environment variable:
// ${env:SMOKE_PASSWORD}.
const EnvRefPrefix = "env:"

// TemplateRefs lists the names s refers to, in order (env references keep
// their env: prefix). An unclosed ${ or a bad name is an error that says how
// to write it.
func TemplateRefs(s string) ([]string, error) {
	var refs []string
	_, err := expandTemplate(s, func(name string) (string, bool) {
		refs = append(refs, name)
		return "", true
	})
	return refs, err
}

// ExpandTemplate replaces every ${name} of s by lookup(name); a name lookup
// does not know is an error naming it.
func ExpandTemplate(s string, lookup func(name string) (string, bool)) (string, error) {
	return expandTemplate(s, lookup)
}

func expandTemplate(s string, lookup func(name string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("%q has ${ without a closing }: write ${name}, or $${ for a literal ${", s)
			}
			name := s[i+2 : i+2+end]
			if err := checkRefName(name); err != nil {
				return "", err
			}
			v, ok := lookup(name)
			if !ok {
				return "", fmt.Errorf("${%s} has no value", name)
			}
			b.WriteString(v)
			i += 2 + end + 1
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), nil
}

func checkRefName(name string) error {
	if env, ok := strings.CutPrefix(name, EnvRefPrefix); ok {
		if !envName.MatchString(env) {
			return fmt.Errorf("${%s}: %q is not an environment variable name: use capitals, digits and _ ([A-Z_][A-Z0-9_]*)", name, env)
		}
		return nil
	}
	if !varName.MatchString(name) {
		return fmt.Errorf("${%s}: %q is not a captured value's name: use letters, digits and _ (e.g. ${token}), or ${env:NAME}; write $${ for a literal ${", name, name)
	}
	return nil
}

// RequestTemplates calls fn with every text of r that may hold ${name}
// references: the url, each header value, the body, and every string in the
// json body (keys are not templates), with the path each is written at
// (relative to the request).
func RequestTemplates(r Request, fn func(path, text string)) {
	fn("url", r.URL)
	for _, k := range sortedKeys(r.Headers) {
		fn(joinKey("headers", k), r.Headers[k])
	}
	if r.Body != "" {
		fn("body", r.Body)
	}
	jsonStrings("json", r.JSON, fn)
}

func jsonStrings(path string, v any, fn func(path, text string)) {
	switch x := v.(type) {
	case string:
		fn(path, x)
	case map[string]any:
		for _, k := range sortedKeys(x) {
			jsonStrings(joinKey(path, k), x[k], fn)
		}
	case []any:
		for i, e := range x {
			jsonStrings(joinIndex(path, i), e, fn)
		}
	}
}

// --- captures ---

// CaptureHeaderPrefix marks a capture from a response header:
// capture: {request_id: "header:X-Request-Id"}.
const CaptureHeaderPrefix = "header:"

// Capture is where one captured value comes from. It is written as a text
// — a JSON path of the response body ("token", "data.items[0].id",
// "$.token", "$.items[?@.sku=='A'].id"; see ParseJSONPath) or
// "header:Name" — or as a mapping {json: path} / {header: Name}, which may
// add secret: false to let the value be shown in events. The path must
// select exactly one value that is not null: none, null or several fail
// the step.
// Captured values are secret by default: replaced by [name] wherever a
// test's details or error would show them.
type Capture struct {
	JSON   string
	Header string
	Secret bool
}

// Source names the capture's origin for messages: "JSON path token" or
// "header X-Request-Id".
func (c Capture) Source() string {
	if c.Header != "" {
		return "header " + c.Header
	}
	return "JSON path " + c.JSON
}

// ParseCapture reads one capture as the plan writes it (a text or a mapping).
func ParseCapture(v any) (Capture, error) {
	switch x := v.(type) {
	case string:
		c := Capture{Secret: true}
		if h, ok := strings.CutPrefix(x, CaptureHeaderPrefix); ok {
			c.Header = strings.TrimSpace(h)
		} else {
			c.JSON = strings.TrimSpace(x)
		}
		return c, c.check()
	case map[string]any:
		c := Capture{Secret: true}
		for _, k := range sortedKeys(x) {
			switch k {
			case "json", "header":
				s, ok := x[k].(string)
				if !ok {
					return c, fmt.Errorf("%s must be a text, got %v", k, x[k])
				}
				if k == "json" {
					c.JSON = strings.TrimSpace(s)
				} else {
					c.Header = strings.TrimSpace(s)
				}
			case "secret":
				b, ok := x[k].(bool)
				if !ok {
					return c, fmt.Errorf("secret must be true or false, got %v", x[k])
				}
				c.Secret = b
			default:
				return c, fmt.Errorf("unknown field %q in a capture: allowed fields are json, header, secret", k)
			}
		}
		if c.JSON != "" && c.Header != "" {
			return c, fmt.Errorf("a capture takes json or header, not both")
		}
		return c, c.check()
	}
	return Capture{}, fmt.Errorf("a capture is a JSON path (token, data.items[0].id), \"header:Name\", or {json: path, secret: false}, got %v", v)
}

func (c Capture) check() error {
	switch {
	case c.Header != "":
		if !headerName.MatchString(c.Header) {
			return fmt.Errorf("%q is not an HTTP header name (e.g. X-Request-Id)", c.Header)
		}
	case c.JSON == "":
		return fmt.Errorf("a capture needs a JSON path (e.g. token, data.token, $.token) or header:Name")
	default:
		return CheckJSONPath(c.JSON)
	}
	return nil
}

// Captures reads the test's captures, by name.
func (s SmokeTest) Captures() (map[string]Capture, error) {
	out := make(map[string]Capture, len(s.Capture))
	for _, name := range sortedKeys(s.Capture) {
		c, err := ParseCapture(s.Capture[name])
		if err != nil {
			return nil, fmt.Errorf("capture %s: %w", name, err)
		}
		out[name] = c
	}
	return out, nil
}

// --- validation ---

// smokeTests checks test.smoke and test.suites: types, requests,
// expectations, captures, and that every ${name} refers to a value an
// earlier step captures.
func (c *checker) smokeTests(t Test) {
	captured := map[string]string{} // name → path of the step that captures it
	names := map[string]string{}    // type + name → path, for unique names
	for i, su := range t.Suites {
		sp := joinIndex("test.suites", i)
		c.required(joinKey(sp, "name"), su.Name, "a suite name (e.g. critical_paths)")
		c.enum(joinKey(sp, "type"), su.Type, "a test type", smokeTypes)
		if len(su.Steps) == 0 && c.set(sp) {
			c.errorf(joinKey(sp, "steps"), "a suite needs steps: the list of tests it runs in order")
		}
		for j := range i {
			if su.Name != "" && t.Suites[j].Name == su.Name {
				c.errorf(joinKey(sp, "name"), "suite name %q is already used by test.suites[%d]", su.Name, j)
			}
		}
	}
	for _, st := range t.SmokeSteps() {
		path := st.Path
		if c.set(joinKey(path, "type")) { // else the suite's type, checked above
			c.enum(joinKey(path, "type"), st.Type, "a test type", smokeTypes)
		}
		key := st.Type + "\x00" + st.EffectiveName()
		if prev, ok := names[key]; ok {
			c.errorf(joinKey(path, "name"), "test name %q (type %s) is already used by %s: names must be unique, the report lists tests by name", st.EffectiveName(), st.Type, prev)
		} else {
			names[key] = path
		}
		c.smokeRequest(joinKey(path, "request"), st.Request, captured)
		c.expect(joinKey(path, "expect"), st.Expect)
		c.duration(joinKey(path, "timeout"), st.Timeout, false)
		for _, name := range sortedKeys(st.Capture) {
			cp := joinKey(joinKey(path, "capture"), name)
			if !varName.MatchString(name) {
				c.errorf(cp, "%q is not a name for a captured value: use letters, digits and _ (it is used as ${%s})", name, name)
			}
			if _, err := ParseCapture(st.Capture[name]); err != nil {
				c.errorf(cp, "%s", err.Error())
			}
			if prev, ok := captured[name]; ok {
				c.errorf(cp, "%s is already captured by %s: give this value another name", name, prev)
				continue
			}
			captured[name] = path
		}
	}
}

// smokeRequest is request with templates: every ${name} must be captured
// by an earlier step, and the url must be an http(s) URL once expanded.
func (c *checker) smokeRequest(path string, r Request, captured map[string]string) {
	ok := true
	RequestTemplates(r, func(p, text string) {
		refs, err := TemplateRefs(text)
		fp := joinKey(path, p)
		if err != nil {
			c.errorf(fp, "%s", err.Error())
			ok = false
			return
		}
		for _, name := range refs {
			if strings.HasPrefix(name, EnvRefPrefix) {
				continue
			}
			if _, found := captured[name]; !found {
				c.errorf(fp, "${%s} is not captured by an earlier step: add capture: {%s: <JSON path>} to a step before this one (test.smoke runs first, then test.suites in order), or write $${ for a literal ${", name, name)
				ok = false
			}
		}
	})
	if !ok {
		return
	}
	// Check the url with each reference standing in as a plain word.
	u, _ := ExpandTemplate(r.URL, func(string) (string, bool) { return "x", true })
	r.URL = u
	c.request(path, r)
}

// expect checks a response's expectations: a smoke test's, a health
// check's, a wait.until's or an http step's (responseExpect).
func (c *checker) expect(path string, e Expect) {
	c.status(joinKey(path, "status"), e.Status)
	c.nonNegative(joinKey(path, "max_ms"), float64(e.MaxMS), "max_ms")
	for _, k := range sortedKeys(e.Headers) {
		if !headerName.MatchString(k) {
			c.errorf(joinKey(joinKey(path, "headers"), k), "%q is not an HTTP header name: use letters, digits and - (e.g. Content-Type)", k)
		}
	}
	for _, k := range sortedKeys(e.HeadersMatch) {
		kp := joinKey(joinKey(path, "headers_match"), k)
		if !headerName.MatchString(k) {
			c.errorf(kp, "%q is not an HTTP header name: use letters, digits and - (e.g. Content-Type)", k)
		}
		c.pattern(kp, e.HeadersMatch[k])
	}
	for _, k := range sortedKeys(e.JSON) {
		c.jsonPathKey(joinKey(joinKey(path, "json"), k), k)
	}
	for _, k := range sortedKeys(e.JSONMatch) {
		kp := joinKey(joinKey(path, "json_match"), k)
		c.jsonPathKey(kp, k)
		c.pattern(kp, e.JSONMatch[k])
	}
	for i, p := range e.JSONAbsent {
		c.jsonPath(joinIndex(joinKey(path, "json_absent"), i), p)
	}
	if slices.Contains(e.BodyContains, "") {
		c.errorf(joinKey(path, "body_contains"), "an empty text is always contained: remove it")
	}
}

func (c *checker) jsonPath(path, p string) {
	if err := CheckJSONPath(p); err != nil {
		c.errorf(path, "%s", err.Error())
	}
}

// jsonPathKey checks a JSON path written as a mapping key (json: {path:
// value}); a bad one is reported where the key is written.
func (c *checker) jsonPathKey(path, p string) {
	err := CheckJSONPath(p)
	if err == nil || c.skip(path) {
		return
	}
	k, ok := c.d.keys[path]
	line, col := 0, 0
	if ok {
		line, col = nodePos(k)
	}
	if line == 0 {
		c.errorf(path, "%s", err.Error())
		return
	}
	c.issues = append(c.issues, Issue{Path: path, Line: line, Column: col, Message: err.Error()})
}

func (c *checker) pattern(path, expr string) {
	if _, err := regexp.Compile(expr); err != nil {
		c.errorf(path, "%q is not a regular expression (Go RE2 syntax): %v", expr, err)
	}
}
