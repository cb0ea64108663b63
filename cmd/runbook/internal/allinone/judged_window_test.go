package allinone_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The window opens once the release serves: a deploy whose health gate
// waits 3 s (initial_delay) before its first try still has its whole 4 s
// window watched, from deploy.done, one judged round a second; the rounds
// taken while the deploy ran are recorded, not judged.
func TestWindowOpensAfterTheHealthGate(t *testing.T) {
	tg := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(tg.Close)
	p := startPipeline(t, nil)
	run := p.submit(t, []byte(fmt.Sprintf(`change_request: {id: CR-LIVE, title: "judged once live", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
deploy:
  steps:
    - {name: roll out, idempotent: true, command: {argv: ["true"]}}
  health:
    - {url: %q, initial_delay: 3s, attempts: 3, interval: 1s}
rollback_plan:
  rollback_steps:
    - {name: restore, idempotent: true, command: {argv: ["true"]}}
monitor:
  window: 4s
  interval: 1s
  baseline: 0s
  sources:
    - http_probe: {url: %q, requests: 2}
`, tg.URL+"/health", tg.URL)))
	rr := p.report(t, run, 60*time.Second)
	evs := p.history(t, run)
	if rr.Status != "SUCCESS" {
		t.Fatalf("ended %s: %v", rr.Status, types(evs))
	}
	started := evs[index(evs, "deploy.started")].Time.AsTime()
	done := evs[index(evs, "deploy.done")].Time.AsTime()
	end := evs[index(evs, "monitor.completed")]
	mc := end.GetMonitorCompleted()
	if d := done.Sub(started); d < 3*time.Second {
		t.Fatalf("deploy.done %s after deploy.started; the health gate's 3s delay did not hold", d)
	}
	if !mc.WindowOpened.AsTime().Equal(done) {
		t.Errorf("window opened at %s; want deploy.done's time %s", mc.WindowOpened.AsTime(), done)
	}
	if watched := end.Time.AsTime().Sub(done); watched < 4*time.Second {
		t.Errorf("monitor.completed %s after deploy.done; want the whole 4s window after it", watched)
	}
	// 4 s judged every 1 s: 4 rounds (the last at the window's end).
	if st := mc.Stats["error_rate"]; st == nil || st.Samples < 3 || st.Samples > 5 {
		t.Errorf("judged error_rate samples = %v; want ≈ 4 (window / interval)", st)
	}
	if mc.DuringDeploySamples == 0 {
		t.Errorf("monitor.completed = %v; want the deploy's rounds recorded", mc)
	}
	ss, err := p.bus.RunSamples(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	judged, during := 0, 0
	for _, s := range ss {
		switch at := s.Time.AsTime(); {
		case s.DuringDeploy:
			during++
			if at.After(done) {
				t.Errorf("sample %v marked during_deploy after deploy.done", s)
			}
		case !at.Before(done):
			judged++
		}
	}
	if judged != int(mc.Samples) || during != int(mc.DuringDeploySamples) {
		t.Errorf("published %d judged and %d during-deploy samples; monitor.completed says %d and %d", judged, during, mc.Samples, mc.DuringDeploySamples)
	}
	noDuplicateIDs(t, evs)
}
