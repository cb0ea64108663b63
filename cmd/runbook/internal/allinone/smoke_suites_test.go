package allinone_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// seedSuite is the order of the seed's smoke-tests.js as the example plans
// write it: critical paths, API endpoints, database, external
// integrations, performance baseline.
var seedSuite = []string{
	"User Authentication", "Estimate Creation", "Session Check",
	"GET /api/v1/health", "GET /api/v1/estimates", "GET /api/v1/templates",
	"Estimate Store", "Prometheus Metrics", "API Response Time",
}

// issuedToken is what the estimator's login hands out.
var issuedToken = regexp.MustCompile(`demo-[0-9a-f]{48}`)

// withoutMonitor leaves the tests alone to judge the release: the watch
// window would otherwise race them to the rollback.
func withoutMonitor(s string) string {
	a, b := strings.Index(s, "\nmonitor:\n"), strings.Index(s, "\ntest:\n")
	if a < 0 || b < a {
		panic("example plan without monitor/test sections")
	}
	return shorten(s[:a] + s[b:])
}

func smokeResult(t *testing.T, evs []*runbookv1.Event) (*runbookv1.TestSuiteResult, string) {
	t.Helper()
	for _, e := range evs {
		if r := e.GetTestSmokePassed(); r != nil {
			return r, e.Type
		}
		if r := e.GetTestSmokeFailed(); r != nil {
			return r, e.Type
		}
	}
	t.Fatalf("no smoke result in %v", types(evs))
	return nil, ""
}

// noSecretInClear fails when a token the estimator issued, or the password
// the login sent (from the tester's environment), is in any event.
func noSecretInClear(t *testing.T, evs []*runbookv1.Event) {
	t.Helper()
	for _, e := range evs {
		b, err := protojson.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if tok := issuedToken.Find(b); tok != nil {
			t.Errorf("event %s carries the captured token in clear: %s", e.Type, b)
		}
		if strings.Contains(string(b), demoPassword) {
			t.Errorf("event %s carries the login password in clear: %s", e.Type, b)
		}
	}
}

func TestSeedSmokeSuitesAgainstTheDemoTarget(t *testing.T) {
	tg := startTarget(t)
	p := startPipeline(t, nil)

	// Good release: every test of the seed's suites passes, in its order,
	// the login's token carried into the requests after it.
	good := p.submit(t, examplePlan(t, "good.yaml", tg, shorten))
	rr := p.report(t, good, 60*time.Second)
	evs := p.history(t, good)
	suite, typ := smokeResult(t, evs)
	if rr.Status != "SUCCESS" || typ != "test.smoke.passed" {
		t.Fatalf("good release: %s, %s %v", rr.Status, typ, suite)
	}
	if len(suite.Tests) != len(seedSuite) || suite.Passed != int32(len(seedSuite)) {
		t.Fatalf("good release: %d tests, %d passed, want %d: %v", len(suite.Tests), suite.Passed, len(seedSuite), suite.Tests)
	}
	for i, c := range suite.Tests {
		if c.Name != seedSuite[i] || c.Status != "PASS" {
			t.Errorf("test %d = %s %s (%s), want %s PASS", i, c.Name, c.Status, c.Error, seedSuite[i])
		}
	}
	if d := suite.Tests[1].Details; !strings.Contains(d, "createdBy=test@company.com") {
		t.Errorf("Estimate Creation details %q: the token did not reach it", d)
	}
	if d := suite.Tests[0].Details; !strings.Contains(d, "captured token") {
		t.Errorf("User Authentication details %q: want the capture named", d)
	}
	if c := suite.Tests[8]; c.Type != "performance" || !strings.Contains(c.Details, "threshold: 2100ms") {
		t.Errorf("performance baseline %+v", c)
	}
	noSecretInClear(t, evs)

	// Bad release (500 on 30 % of API requests, health green), judged by the
	// tests alone: the smoke suite fails, naming each failing test; steps
	// that needed the token a failed login did not give are skipped, saying so.
	bad := p.submit(t, examplePlan(t, "bad-release.yaml", tg, withoutMonitor))
	rr = p.report(t, bad, 60*time.Second)
	evs = p.history(t, bad)
	suite, typ = smokeResult(t, evs)
	if typ != "test.smoke.failed" || suite.Failed == 0 || rr.Status != "ROLLED_BACK" {
		t.Fatalf("bad release: %s, %s, %v", rr.Status, typ, suite.Tests)
	}
	failed := evs[index(evs, "test.failed")].GetTestFailed()
	if failed == nil || !failed.RollbackRequested {
		t.Fatalf("no test.failed asking for a rollback: %v", types(evs))
	}
	t.Logf("bad release: %s", failed.Reason)
	var fails int
	for i, c := range suite.Tests {
		if c.Name != seedSuite[i] {
			t.Errorf("test %d = %s, want %s", i, c.Name, seedSuite[i])
		}
		switch c.Status {
		case "FAIL":
			fails++
			if !strings.Contains(c.Error, "HTTP 500") {
				t.Errorf("%s failed with %q, want the injected HTTP 500", c.Name, c.Error)
			}
			if !strings.Contains(failed.Reason, c.Name+" (") {
				t.Errorf("test.failed reason %q does not name %s", failed.Reason, c.Name)
			}
		case "SKIP":
			if !strings.Contains(c.Error, "skipped: needs ${token}") || !strings.Contains(c.Error, `step "User Authentication" failed: HTTP 500`) {
				t.Errorf("%s skipped with %q, want the token and the failed login named", c.Name, c.Error)
			}
		}
	}
	if fails == 0 || int32(fails) != suite.Failed {
		t.Errorf("%d FAIL tests, suite says %d failed", fails, suite.Failed)
	}
	if c := suite.Tests[8]; c.Status != "PASS" {
		t.Errorf("the health baseline (no injected errors, 400 ms < 2100 ms) = %s %s", c.Status, c.Error)
	}
	noSecretInClear(t, evs)
}
