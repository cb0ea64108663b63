package tester_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
)

// A suite whose steps share captured values: the value reaches the next
// request, a missing path fails its step, the step needing it is skipped,
// and the captured (secret) value is in no event.
func TestSmokeSuiteCapturesAndSkips(t *testing.T) {
	t.Parallel()
	h := start(t)
	h.submit("suite", `
change_request: {id: CR-T-S, title: suites}
test:
  suites:
    - name: critical_paths
      steps:
        - name: Version
          request: {url: "{{URL}}/health"}
          capture: {version: $.version}
        - name: Uses Version
          request: {url: "{{URL}}/v/${version}/health"}
          expect: {json: {version: "*"}}
        - name: Token
          request: {url: "{{URL}}/health"}
          capture: {token: $.token}
        - name: Uses Token
          request: {url: "{{URL}}/t/${token}/health"}
`)
	h.deployDone("suite")
	evs := h.waitFor("suite", "test.failed")
	order(t, evs, "test.started", "test.smoke.failed", "rollback.requested", "test.failed")
	suite := find(evs, "test.smoke.failed").GetTestSmokeFailed()
	var got []string
	for _, c := range suite.GetTests() {
		got = append(got, c.GetName()+":"+c.GetStatus())
	}
	if strings.Join(got, " ") != "Version:PASS Uses Version:PASS Token:FAIL Uses Token:SKIP" || suite.GetPassed() != 2 || suite.GetFailed() != 1 {
		t.Fatalf("suite %v passed %d failed %d", got, suite.GetPassed(), suite.GetFailed())
	}
	tc := suite.GetTests()
	if !strings.Contains(tc[2].GetError(), "capture token: JSON path $.token is missing from the response") {
		t.Errorf("Token error %q", tc[2].GetError())
	}
	if !strings.Contains(tc[3].GetError(), `skipped: needs ${token}, which was not captured: step "Token" could not capture it`) {
		t.Errorf("Uses Token error %q", tc[3].GetError())
	}
	if !strings.Contains(tc[1].GetDetails(), "version=[version]") {
		t.Errorf("Uses Version details %q: want the secret shown as [version]", tc[1].GetDetails())
	}
	if h.tg.count("/suite/v/2.0.0/health") != 1 {
		t.Error("the captured version did not reach the next request's url")
	}
	h.tg.mu.Lock()
	for p := range h.tg.hits {
		if strings.Contains(p, "/t/") {
			t.Errorf("the skipped step was sent: %s", p)
		}
	}
	h.tg.mu.Unlock()
	reason := find(evs, "test.failed").GetTestFailed().GetReason()
	if !strings.Contains(reason, "1 of 4 smoke tests failed: Token (") || !strings.Contains(reason, "1 skipped: Uses Token") {
		t.Errorf("test.failed reason %q", reason)
	}
	for _, e := range evs {
		if b, _ := protojson.Marshal(e); strings.Contains(string(b), "2.0.0") {
			t.Errorf("captured secret in %s: %s", e.GetType(), b)
		}
	}
}
