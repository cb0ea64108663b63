package allinone_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kis-core/runbook/services/reporter/report"
)

// releaseTarget is a service with a switchable release: POST
// /switch?to=NAME makes NAME live; /api/orders answers 500 while the "bad"
// release is live, 200 otherwise.
type releaseTarget struct {
	*httptest.Server
	mu      sync.Mutex
	release string
}

func newReleaseTarget(t *testing.T) *releaseTarget {
	tg := &releaseTarget{release: "good"}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		defer tg.mu.Unlock()
		switch r.URL.Path {
		case "/switch":
			tg.release = r.URL.Query().Get("to")
			w.WriteHeader(http.StatusAccepted)
		case "/api/orders":
			if tg.release == "bad" {
				http.Error(w, `{"error":"boom"}`, http.StatusInternalServerError)
				return
			}
			_, _ = io.WriteString(w, `{"orders":[],"release":"`+tg.release+`"}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(tg.Close)
	return tg
}

// verifyPlan deploys the bad release; the tests fail and ask for a
// rollback whose step switches to rollbackTo, then re-runs critical_paths.
func verifyPlan(url, rollbackTo string) []byte {
	return []byte(strings.NewReplacer("URL", url, "TO", rollbackTo).Replace(`change_request: {id: CR-VERIFY, title: "rollback verification", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
rollback_plan:
  rollback_steps:
    - {name: switch back, http: {url: "URL/switch?to=TO"}}
  verify: [critical_paths]
deploy:
  steps:
    - {name: switch to the new release, http: {url: "URL/switch?to=bad"}}
test:
  suites:
    - name: critical_paths
      steps:
        - {name: Orders, request: {url: "URL/api/orders"}, expect: {status: 200, json: {orders: "*"}}}
`))
}

// rollback_plan.verify end to end: a bad release is rolled back and
// critical_paths re-run against what the rollback left. The old release
// answers again: ROLLED_BACK, the verification in the report. The rollback
// left the bad release serving: ROLLBACK_FAILED, naming the failed test.
func TestRollbackVerifiedEndToEnd(t *testing.T) {
	p := startPipeline(t, nil)
	good, stuck := newReleaseTarget(t), newReleaseTarget(t)
	okRun := p.submit(t, verifyPlan(good.URL, "good"))
	badRun := p.submit(t, verifyPlan(stuck.URL, "bad"))

	type reportJSON struct {
		Rollback struct {
			Executed     bool                         `json:"executed"`
			Verification *report.RollbackVerification `json:"verification"`
		} `json:"rollback"`
		Summary struct {
			OverallStatus string `json:"overall_status"`
		} `json:"summary"`
	}
	check := func(t *testing.T, run, status, verifyStatus, outcome string) reportJSON {
		t.Helper()
		rr := p.report(t, run, 60*time.Second)
		evs := p.history(t, run)
		if rr.Status != status {
			t.Fatalf("ended %s, want %s:\n%s\nevents: %v", rr.Status, status, rr.QcSummary, types(evs))
		}
		// rollback.done, then the tester's one outcome, then the report.
		if i, j, k := index(evs, "rollback.done"), index(evs, outcome), index(evs, "report.ready"); i < 0 || j < i || k < j {
			t.Fatalf("rollback.done at %d, %s at %d, report.ready at %d: %v", i, outcome, j, k, types(evs))
		}
		if n := countType(evs, "rollback.verified") + countType(evs, "rollback.verify.failed"); n != 1 {
			t.Errorf("%d verification outcomes, want 1: %v", n, types(evs))
		}
		if rs := evs[index(evs, "rollback.started")].GetRollbackStarted(); strings.Join(rs.GetVerify(), ",") != "critical_paths" {
			t.Errorf("rollback.started verify %q", rs.GetVerify())
		}
		noDuplicateIDs(t, evs)
		var rep reportJSON
		if err := json.Unmarshal([]byte(rr.ReportJson), &rep); err != nil {
			t.Fatal(err)
		}
		v := rep.Rollback.Verification
		if !rep.Rollback.Executed || v == nil || v.Status != verifyStatus || len(v.Tests) != 1 || v.Tests[0].Name != "Orders" {
			t.Fatalf("report rollback %+v verification %+v:\n%s", rep.Rollback, v, rr.ReportJson)
		}
		return rep
	}

	t.Run("the old release answers again: ROLLED_BACK", func(t *testing.T) {
		rep := check(t, okRun, "ROLLED_BACK", report.VerifyPass, "rollback.verified")
		if !strings.Contains(rep.Summary.OverallStatus, "verified: 1 suite(s) passed (critical_paths)") {
			t.Errorf("overall status %q", rep.Summary.OverallStatus)
		}
		if c := rep.Rollback.Verification.Tests[0]; c.Status != "PASS" {
			t.Errorf("Orders after the rollback: %+v", c)
		}
	})

	t.Run("the rollback left it broken: ROLLBACK_FAILED", func(t *testing.T) {
		rep := check(t, badRun, "ROLLBACK_FAILED", report.VerifyFail, "rollback.verify.failed")
		if want := "rolled back, but the verification failed: 1 of 1 test(s) failed: Orders — production state uncertain"; !strings.Contains(rep.Summary.OverallStatus, want) {
			t.Errorf("overall status %q, want it to say %q", rep.Summary.OverallStatus, want)
		}
		if c := rep.Rollback.Verification.Tests[0]; c.Status != "FAIL" || !strings.Contains(c.Error, "HTTP 500") {
			t.Errorf("Orders after the rollback: %+v", c)
		}
	})
}
