package allinone_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Bad input stays out of the model (issue 12, 7): garbage bytes, a
// truncated protobuf, a JSON event of an unknown payload and events of an
// unknown type, published raw on runs' subjects, are dead-lettered
// visibly and make no run — not in the read API's list nor in `runbook
// runs` —; a change request published without a time gets a report that
// starts at the stream's timestamp and lasts seconds.
func TestBadInputMakesNoRun(t *testing.T) {
	p := startPipeline(t, func(o *allinone.Options) { o.InsecureNoAuth = true; o.HTTPListen = "127.0.0.1:0" })
	nc := natsConn(t, p.srv.NATSURL())
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	publish := func(subject, contentType string, data []byte) {
		t.Helper()
		msg := nats.NewMsg(subject)
		if contentType != "" {
			msg.Header.Set("Content-Type", contentType)
		}
		msg.Data = data
		if _, err := js.PublishMsg(msg); err != nil {
			t.Fatalf("publish %s: %v", subject, err)
		}
	}
	valid, err := proto.Marshal(eventbus.New("TRUNC-1", &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		PlanYaml: trivialPlan, ChangeId: "CR-T", Title: "truncated"}}))
	if err != nil {
		t.Fatal(err)
	}
	renamed, _ := json.Marshal(map[string]any{"id": "UNKTYPE-2/x", "runId": "UNKTYPE-2", "type": "deploy.exploded",
		"changeRequested": map[string]any{"planYaml": trivialPlan}})
	bad := map[string]string{} // run id → what was published
	for _, m := range []struct {
		run, subject, ct string
		data             []byte
	}{
		{"GARBAGE-1", "runbook.GARBAGE-1.change.requested", "", []byte("\xff\xfe not a protobuf at all \x00\x01")},
		{"TRUNC-1", "runbook.TRUNC-1.change.requested", eventbus.ContentTypeProto, valid[:len(valid)/2]},
		{"UNKJSON-1", "runbook.UNKJSON-1.change.requested", eventbus.ContentTypeJSON,
			[]byte(`{"id":"UNKJSON-1/x","runId":"UNKJSON-1","type":"change.requested","changeTeleported":{"to":"mars"}}`)},
		{"UNKTYPE-1", "runbook.UNKTYPE-1.deploy.exploded", eventbus.ContentTypeJSON,
			[]byte(`{"id":"UNKTYPE-1/x","runId":"UNKTYPE-1","type":"deploy.exploded","deployDone":{}}`)},
		{"UNKTYPE-2", "runbook.UNKTYPE-2.change.requested", eventbus.ContentTypeJSON, renamed},
	} {
		publish(m.subject, m.ct, m.data)
		bad[m.run] = m.subject
	}

	// Each is dead-lettered where it can be seen: by the reporter, which
	// reads every subject (UNKTYPE-1's type no service consumes), and by
	// pre-flight for the change requests.
	for run, subject := range bad {
		for _, consumer := range []string{"reporter", "preflight"} {
			if consumer == "preflight" && !strings.HasSuffix(subject, ".change.requested") {
				continue
			}
			p.waitEvent(t, run, "event.dead_lettered", 30*time.Second, func(e *runbookv1.Event) bool {
				d := e.GetEventDeadLettered()
				return d.GetConsumer() == consumer && d.GetOriginalSubject() == subject && strings.Contains(d.GetReason(), "undecodable")
			})
		}
	}

	// A change request without a time: its report starts at the stream's
	// timestamp and lasts seconds.
	body, _ := json.Marshal(map[string]any{"id": "TIMELESS-1/change.requested", "runId": "TIMELESS-1", "type": "change.requested",
		"changeRequested": map[string]any{"planYaml": trivialPlan, "planSource": "script"}})
	publish("runbook.TIMELESS-1.change.requested", eventbus.ContentTypeJSON, body)
	rr := p.report(t, "TIMELESS-1", 60*time.Second)
	raw, err := js.GetLastMsg(eventbus.AuditStream, "runbook.TIMELESS-1.change.requested")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Deployment struct {
			StartTime string  `json:"startTime"`
			EndTime   *string `json:"endTime"`
			Duration  string  `json:"duration"`
		} `json:"deployment"`
	}
	if err := json.Unmarshal([]byte(rr.GetReportJson()), &rep); err != nil {
		t.Fatal(err)
	}
	start, err := time.Parse(time.RFC3339Nano, rep.Deployment.StartTime)
	if err != nil || rep.Deployment.EndTime == nil {
		t.Fatalf("report deployment %+v: %v", rep.Deployment, err)
	}
	end, err := time.Parse(time.RFC3339Nano, *rep.Deployment.EndTime)
	if err != nil {
		t.Fatal(err)
	}
	if d := start.Sub(raw.Time); d < -time.Millisecond || d > time.Millisecond {
		t.Errorf("report starts %s, the stream stored the change request at %s", start, raw.Time)
	}
	if d := end.Sub(start); d < 0 || d > 2*time.Minute {
		t.Errorf("report lasts %s (%s): want seconds", d, rep.Deployment.Duration)
	}

	// The read model has caught up (it reported TIMELESS-1, published
	// after them); none of the bad ones is a run, every one's dead letters
	// are listed.
	base := "http://" + p.srv.HTTPAddr()
	get := func(path string, v any) int {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if v != nil && resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatalf("GET %s: %v: %s", path, err, b)
			}
		}
		return resp.StatusCode
	}
	var runs struct {
		Runs []struct {
			RunID string `json:"run_id"`
		} `json:"runs"`
	}
	natstest.Eventually(t, 10*time.Second, "TIMELESS-1 in the read API", func() bool {
		runs.Runs = nil
		get("/api/v1/runs", &runs)
		for _, r := range runs.Runs {
			if r.RunID == "TIMELESS-1" {
				return true
			}
		}
		return false
	})
	var listed []string
	for _, r := range runs.Runs {
		listed = append(listed, r.RunID)
	}
	if len(listed) != 1 {
		t.Errorf("GET /api/v1/runs lists %v; want TIMELESS-1 only", listed)
	}
	var dead struct {
		DeadLetters []struct {
			RunID    string `json:"run_id"`
			Consumer string `json:"consumer"`
		} `json:"dead_letters"`
	}
	if code := get("/api/v1/dead-letters", &dead); code != http.StatusOK {
		t.Fatalf("GET /api/v1/dead-letters: %d", code)
	}
	for run := range bad {
		if code := get("/api/v1/runs/"+run, nil); code != http.StatusNotFound {
			t.Errorf("GET /api/v1/runs/%s: %d, want 404", run, code)
		}
		found := false
		for _, d := range dead.DeadLetters {
			found = found || d.RunID == run
		}
		if !found {
			t.Errorf("GET /api/v1/dead-letters lists none of %s: %+v", run, dead.DeadLetters)
		}
	}
	code, out, errOut := p.runCLI(t, "runs")
	if code != 0 || !strings.Contains(out, "TIMELESS-1") || !strings.Contains(out, "5 run id(s) hold dead-lettered messages only") {
		t.Fatalf("runbook runs: exit %d\n%s%s", code, out, errOut)
	}
	for run := range bad {
		if strings.Contains(out, run) {
			t.Errorf("runbook runs lists %s:\n%s", run, out)
		}
	}
	if _, err := p.bus.RunHistory(context.Background(), "GARBAGE-1"); err != nil {
		t.Fatal(err)
	}
}

// A change request that decodes but that its consumers refuse (published
// unsigned, with authentication on) is no run either once refused: the
// read API does not list it, and its dead letters are listed.
func TestRefusedChangeRequestMakesNoRun(t *testing.T) {
	p := startPipeline(t, func(o *allinone.Options) { o.HTTPListen = "127.0.0.1:0" })
	nc := natsConn(t, p.srv.NATSURL(), p.srv.Creds("admin"))
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"id": "UNSIGNED-1/change.requested", "runId": "UNSIGNED-1", "type": "change.requested",
		"time": time.Now().UTC().Format(time.RFC3339Nano), "changeRequested": map[string]any{"planYaml": trivialPlan}})
	msg := nats.NewMsg("runbook.UNSIGNED-1.change.requested")
	msg.Header.Set("Content-Type", "application/json")
	msg.Data = body
	if _, err := js.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	p.waitEvent(t, "UNSIGNED-1", "event.dead_lettered", 30*time.Second, func(e *runbookv1.Event) bool {
		return e.GetEventDeadLettered().GetConsumer() == "preflight" && strings.Contains(e.GetEventDeadLettered().GetReason(), "no publisher signature")
	})
	good := p.submit(t, []byte(trivialPlan))
	p.report(t, good, 60*time.Second)
	base := "http://" + p.srv.HTTPAddr()
	natstest.Eventually(t, 10*time.Second, "the read API lists the good run and not the refused one", func() bool {
		resp, err := http.Get(base + "/api/v1/runs")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), good) && !strings.Contains(string(b), "UNSIGNED-1")
	})
	resp, err := http.Get(base + "/api/v1/dead-letters")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `"run_id": "UNSIGNED-1"`) {
		t.Fatalf("dead letters: %s", b)
	}
}
