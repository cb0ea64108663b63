package plan

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/theory/jsonpath"
)

// FuzzParse: whatever bytes arrive (a plan is written by people and sent
// through the bus), Parse does not panic, answers in bounded time, returns a
// plan and no error or no plan and at least one error, says where and what
// for every issue, and says the same thing twice.
//
//	go test -run '^$' -fuzz FuzzParse -fuzztime 3m ./domain/plan/   (make fuzz)
//
// Crashers found are kept under testdata/fuzz/FuzzParse/ and run with every
// `go test`.
func FuzzParse(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		p, issues := Parse("plan.yaml", data)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Parse took %v on %d bytes", took, len(data))
		}
		checkParseResult(t, p, issues)
		p2, issues2 := Parse("plan.yaml", data)
		if !reflect.DeepEqual(issues, issues2) {
			t.Fatalf("not deterministic:\nfirst:  %v\nsecond: %v", issues, issues2)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("not deterministic: the plan differs between two parses")
		}
	})
}

func checkParseResult(t *testing.T, p *Plan, issues []Issue) {
	t.Helper()
	switch {
	case p != nil && HasErrors(issues):
		t.Fatalf("a plan and errors: %v", issues)
	case p == nil && !HasErrors(issues):
		t.Fatalf("no plan and no error: %v", issues)
	}
	for _, is := range issues {
		if is.Path == "" && is.Message == "" {
			t.Errorf("issue without path or message: %#v", is)
		}
		if is.Message == "" {
			t.Errorf("issue without a message: %#v", is)
		}
		if is.Line < 0 || is.Column < 0 {
			t.Errorf("issue with a negative position: %#v", is)
		}
	}
}

// fuzzSeeds: every plan in the repository, whole and truncated, and a
// collection of broken YAML.
func fuzzSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	var files []string
	for _, pattern := range []string{
		"../../examples/plans/*.yaml",
		"testdata/*.yml",
		"testdata/invalid/*.yml",
	} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			tb.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 10 {
		tb.Fatalf("only %d seed plans found: %v", len(files), files)
	}
	var seeds [][]byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, b)
		if len(b) > 200 {
			// Truncated files: cut mid-line, mid-token and at a line end.
			for _, cut := range []int{len(b) / 3, len(b) / 2, len(b) * 2 / 3, len(b) - 7} {
				seeds = append(seeds, b[:cut])
			}
			if i := strings.LastIndexByte(string(b[:len(b)/2]), '\n'); i > 0 {
				seeds = append(seeds, b[:i])
			}
			// Tabs for indentation.
			seeds = append(seeds, []byte(strings.ReplaceAll(string(b), "  ", "\t")))
		}
	}
	for _, s := range brokenYAML() {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// brokenYAML is hand-written trouble: syntax errors, alias loops and
// bombs, huge numbers, wrong types and deep nesting.
func brokenYAML() []string {
	s := []string{
		"",
		"\x00",
		"---",
		"--- \n...\n",
		"# only a comment\n",
		"null",
		"~",
		"42",
		"- a\n- b\n",
		"\"just text\"",
		"change_request:\n\tid: CR-1\n",
		"change_request: {id: CR-1\n",
		"change_request: [\n",
		"change_request:\n  title: \"unclosed\n",
		"change_request:\n  title: 'unclosed\n",
		"a: b: c\n",
		"? [a, b]\n: c\n",
		"{[a]: b}\n",
		"*undefined\n",
		"&a a: 1\n",
		"!!binary aGVsbG8=\n",
		"deploy: !!str {steps: []}\n",
		"deploy:\n  steps:\n    - name: a\n      command: {argv: [true]}\n      timeout: 99999999999999999999999h\n",
		"test: {load: {vus: 99999999999999999999999999999999999999}}\n",
		"test: {load: {vus: -9223372036854775809, duration: 1e400s}}\n",
		"monitor: {thresholds: {error_rate: 1e99999, cpu_utilization: .inf, memory_utilization: .nan}}\n",
		"monitor: {interval: 0x7fffffffffffffff, window: 0o777}\n",
		"deploy: {steps: [{name: a, retries: 18446744073709551616, command: {argv: [x]}}]}\n",
		"timeline: {planned_start: 9999-99-99T99:99:99Z, estimated_duration: -1 hours}\n",
		// Wrong types everywhere.
		"change_request: [1, 2]\nrequester: 3\ndescription: {a: b}\nscope: text\ntimeline: true\n" +
			"risks_and_mitigations: {r: 1}\nrollback_plan: []\napproval: [a]\npreflight: 1.5\n" +
			"deploy: yes\nmonitor: ~\ntest: [[]]\nreport: \"\"\n",
		"deploy: {steps: {name: a}, health: text, finally: 3}\n",
		"preflight: {checks: [[], 1, text, {http: [], tcp: 1, env: {required: x}}]}\n",
		"approval: {technical_approval: [a], business_approval: {status: [x], timestamp: {}}}\n",
		"risks_and_mitigations: [{id: [], probability: {}, impact: [], risk: 1}]\n",
		// Aliases: undefined, self-referencing, through merge keys, bombs.
		"x-a: &a {b: 1}\ndeploy: *b\n",
		"deploy: &d\n  steps: *d\n",
		"x-a: &a\n  b: 1\n  <<: *a\ndeploy: *a\n",
		"x-a: &a {<<: *a}\n",
		"x-a: &a {<<: [*a, *a]}\ndeploy: *a\n",
		"x-a: &a\n  <<: *b\nx-b: &b\n  <<: *a\ndeploy: *a\n",
		"test:\n  smoke:\n    - name: a\n      request: {url: \"http://a.internal/\", json: &j [*j, *j]}\n",
		"test:\n  smoke:\n    - name: a\n      request: {url: \"http://a.internal/\", json: &j {a: *j, b: *j}}\n",
		laughs("test:\n  smoke:\n    - name: a\n      request: {url: \"http://a.internal/\", json: *l9}\n"),
		laughs("deploy:\n  steps: *l9\n"),
		laughs("x-unused: 1\n"),
		mergeBomb(),
		// Deep nesting.
		"a: " + strings.Repeat("[", 200),
		"a: " + strings.Repeat("[", 100) + strings.Repeat("]", 100),
		"a: " + strings.Repeat("{a: ", 100) + strings.Repeat("}", 100),
		"test: {smoke: [{name: a, request: {url: \"http://a.internal/\", json: " + strings.Repeat("[", 70) + strings.Repeat("]", 70) + "}}]}\n",
		blockNesting(100),
	}
	return s
}

// laughs is the billion laughs: anchor l9 expands to 10^9 "lol".
func laughs(tail string) string {
	var b strings.Builder
	b.WriteString("x-l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "x-l%d: &l%d [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	b.WriteString(tail)
	return b.String()
}

// mergeBomb doubles a mapping 40 times through merge keys.
func mergeBomb() string {
	var b strings.Builder
	b.WriteString("x-m0: &m0 {name: a}\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&b, "x-m%d: &m%d {<<: [*m%d, *m%d]}\n", i, i, i-1, i-1)
	}
	b.WriteString("deploy:\n  steps:\n    - *m40\n")
	return b.String()
}

func blockNesting(depth int) string {
	var b strings.Builder
	b.WriteString("test:\n  smoke:\n    - name: a\n      request:\n        url: \"http://a.internal/\"\n        json:\n")
	for i := 0; i < depth; i++ {
		b.WriteString(strings.Repeat("  ", i+5))
		b.WriteString("a:\n")
	}
	return b.String()
}

// TestParsePathological: bombs and deep nesting are refused quickly, with
// little memory and one clear error, not a hang or a crash.
func TestParsePathological(t *testing.T) {
	t.Parallel()
	big := "x-pad: \"" + strings.Repeat("x", MaxPlanSize) + "\"\n"
	cases := []struct {
		name, src string
		want      string // in some error message
	}{
		{"billion laughs in a JSON body", laughs("test:\n  smoke:\n    - name: a\n      request: {url: \"http://a.internal/\", json: *l9}\n"), "more than 20000 values"},
		{"billion laughs in the steps", laughs("deploy:\n  steps: *l9\n"), ""},
		{"merge bomb", mergeBomb(), "more than 20000 values"},
		{"self-merge", "x-a: &a\n  b: 1\n  <<: *a\ndeploy: *a\n", "merges itself"},
		{"merge loop", "x-a: &a\n  <<: *b\nx-b: &b\n  <<: *a\ndeploy: *a\n", "merges itself"},
		{"self-reference", "test:\n  smoke:\n    - name: a\n      request: {url: \"http://a.internal/\", json: &j [*j, *j]}\n", "nested too deeply"},
		{"unclosed flow nesting", "a: " + strings.Repeat("[", 200000), "nested more than"},
		{"closed flow nesting", "a: " + strings.Repeat("{a: ", 40000) + strings.Repeat("}", 40000), "nested more than"},
		{"too large", big, "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			p, issues := Parse("plan.yaml", []byte(c.src))
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			checkParseResult(t, p, issues)
			if p != nil {
				t.Fatalf("accepted: %v", issues)
			}
			// Generous bounds (the race detector, a busy machine): without
			// the guards these take minutes or crash.
			if took > 5*time.Second {
				t.Errorf("took %v", took)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 512<<20 {
				t.Errorf("allocated %d MiB", alloc>>20)
			}
			if len(issues) > maxIssues+1 {
				t.Errorf("%d issues, more than %d", len(issues), maxIssues+1)
			}
			if c.want != "" {
				found := false
				for _, is := range issues {
					found = found || strings.Contains(is.Message, c.want)
				}
				if !found {
					t.Errorf("no issue says %q: %v", c.want, issues[:min(len(issues), 5)])
				}
			}
		})
	}
}

// FuzzJSONPath: whatever path a plan holds, ParseJSONPath does not panic;
// a path it accepts is a valid RFC 9535 query (its Query parses back to
// itself), selecting from a document does not panic, each value selected
// is found again by its normalized path, and a short-form path selects at
// most one value (it names one, as it always has).
//
//	go test -run '^$' -fuzz FuzzJSONPath -fuzztime 1m ./domain/plan/
func FuzzJSONPath(f *testing.F) {
	for _, s := range []string{
		"$", "release", "$.release", "data.items[0].id", "items.0.id", "[0].id", "$[1][2]", "a b.c-d",
		"dotted.key", "$..id", "$.items[?(@.sku=='A')].price", "$.items[?@.n>1 && @.n<3]", "$.items[*]",
		"$['a b']", "$.items[-1:0:-1]", "$..*", "$.items[?length(@.sku)==1]", "$.items[?match(@.sku,'[AB]')]",
		"$.items.0.id", "a..b", "items[0", "items[x]", "items[*]", `it's."q"`, "m.0", "$[\"\\u00e9\"]",
	} {
		f.Add(s)
	}
	var docs []any
	for _, d := range []string{
		`{"release":"v1","dotted.key":1,"data":{"items":[{"id":"x"}]},"items":[{"sku":"A","n":1,"id":"a"},{"sku":"B","n":2}],"m":{"0":"zero"},"a b":{"c-d":true}}`,
		`[{"id":[1,{"id":2}]},[],{}]`,
		`"scalar"`,
		`null`,
	} {
		var v any
		if err := json.Unmarshal([]byte(d), &v); err != nil {
			f.Fatal(err)
		}
		docs = append(docs, v)
	}
	f.Fuzz(func(t *testing.T, path string) {
		p, err := ParseJSONPath(path)
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("%q: an empty error", path)
			}
			return
		}
		// The library writes a control character in a name Go's way
		// ("\x00"), which RFC 9535 does not read: only the text form, not
		// the query, so the round trip is checked on printable paths.
		if printable(path) {
			q, err := jsonpath.Parse(p.Query())
			if err != nil || q.String() != p.Query() {
				t.Fatalf("%q: query %s does not parse back (%v, %v)", path, p.Query(), q, err)
			}
		}
		for _, doc := range docs {
			nodes, err := p.Select(doc)
			if err != nil {
				t.Fatalf("%q: %v", path, err)
			}
			if !strings.HasPrefix(path, "$") && len(nodes) > 1 {
				t.Fatalf("short path %q selects %d values", path, len(nodes))
			}
			for _, n := range nodes {
				again := jsonpath.MustParse(n.Path.String()).Select(doc)
				if len(again) != 1 || !reflect.DeepEqual(again[0], n.Node) {
					t.Fatalf("%q: %s selects %v, not %v", path, n.Path, again, n.Node)
				}
			}
		}
	})
}

func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) })
}
