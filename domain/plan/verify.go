package plan

import (
	"fmt"
	"strings"
)

// rollbackVerifyPath is rollback_plan.verify: the suites of test.suites the
// tester re-runs once a rollback's steps are done.
const rollbackVerifyPath = "rollback_plan.verify"

// SuiteNames lists the names of test.suites, in order.
func (t Test) SuiteNames() []string {
	out := make([]string, 0, len(t.Suites))
	for _, su := range t.Suites {
		if su.Name != "" {
			out = append(out, su.Name)
		}
	}
	return out
}

// SuiteSteps lists the steps of the named suites of test.suites, suite by
// suite in the order of names, each as SmokeSteps gives it (effective type,
// suite name, path). Values a step captures are visible to the later steps
// of this list only. Names that are not suites of test.suites are returned
// in missing, in order.
func (t Test) SuiteSteps(names []string) (steps []SmokeStep, missing []string) {
	all := t.SmokeSteps()
	for _, name := range names {
		found := false
		for _, su := range t.Suites {
			if su.Name == name {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, name)
			continue
		}
		for _, st := range all {
			if st.Suite == name {
				steps = append(steps, st)
			}
		}
	}
	return steps, missing
}

// rollbackVerify checks rollback_plan.verify: every name is a suite of
// test.suites (with a suggestion for a near miss), none twice, and every
// ${name} a listed suite uses is captured by a step that runs before it in
// the verification (the suites run on their own, in the order listed: what
// test.smoke or an unlisted suite captures is not there).
func (c *checker) rollbackVerify(names []string, t Test) {
	known := t.SuiteNames()
	seen := map[string]int{}
	ok := true
	for i, name := range names {
		path := joinIndex(rollbackVerifyPath, i)
		switch {
		case strings.TrimSpace(name) == "":
			c.errorf(path, "a suite name is required: name a suite of test.suites (%s)", knownSuites(known))
			ok = false
		case len(known) == 0:
			c.errorf(path, "%q is not a suite of test.suites: the plan has no test.suites; rollback_plan.verify re-runs named suites of test.suites after a rollback, so add the suite there", name)
			ok = false
		default:
			if prev, dup := seen[name]; dup {
				c.errorf(path, "suite %q is already listed at %s: list each suite once", name, joinIndex(rollbackVerifyPath, prev))
				ok = false
				continue
			}
			seen[name] = i
			before := len(c.issues)
			c.enumText(path, name, "a suite of test.suites", known, knownSuites(known))
			ok = ok && len(c.issues) == before
		}
	}
	if !ok {
		return
	}
	// Captures: only what an earlier step of the verification captured.
	captured := map[string]bool{}
	where := map[string]SmokeStep{} // name → the step of the plan that captures it
	for _, st := range t.SmokeSteps() {
		for name := range st.Capture {
			if _, dup := where[name]; !dup {
				where[name] = st
			}
		}
	}
	steps, _ := t.SuiteSteps(names)
	reported := map[string]bool{}
	for _, st := range steps {
		RequestTemplates(st.Request, func(_, text string) {
			refs, err := TemplateRefs(text)
			if err != nil {
				return // reported at the step itself
			}
			for _, ref := range refs {
				if strings.HasPrefix(ref, EnvRefPrefix) || captured[ref] || reported[st.Suite+"\x00"+ref] {
					continue
				}
				src, ok := where[ref]
				if !ok || src.Suite == st.Suite {
					continue // not captured before it in the plan either: reported at the step itself
				}
				reported[st.Suite+"\x00"+ref] = true
				hint := fmt.Sprintf("list suite %q before %q", src.Suite, st.Suite)
				if src.Suite == "" {
					hint = fmt.Sprintf("move that step into a suite and list it before %q", st.Suite)
				}
				c.errorf(joinIndex(rollbackVerifyPath, seen[st.Suite]),
					"suite %q uses ${%s} (%s), which %s captures: a rollback verification runs only the suites listed here, in this order; %s",
					st.Suite, ref, st.Path, src.Path, hint)
			}
		})
		for name := range st.Capture {
			captured[name] = true
		}
	}
}

func knownSuites(known []string) string {
	if len(known) == 0 {
		return "the plan has none"
	}
	return "one of " + quoteList(known)
}
