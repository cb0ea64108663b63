package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Messages the consumers refused make no run in the read API — garbage
// published on a run's subjects (its dead letters only) nor a change
// request every consumer refused — and are listed, newest first, at
// /api/v1/dead-letters.
func TestDeadLettersMakeNoRun(t *testing.T) {
	garbage := &history{run: "garbage-1", start: t0.Add(5 * time.Hour)}
	garbage.add(deadLettered("preflight", "runbook.garbage-1.change.requested", 900, "undecodable event: not a protobuf runbook.v1.Event"), "preflight", 900)
	refused := &history{run: "refused-1", start: t0.Add(6 * time.Hour)}
	refused.add(requested("CR-X", "unsigned"))
	runs := append(fourRuns(), garbage, refused)
	onEachModel(t, runs, func(t *testing.T, f *fixture) {
		// refused-1's change.requested is the fixture's last sequence.
		f.apply(t, eventbus.New("refused-1", deadLettered("preflight", "runbook.refused-1.change.requested", f.seq, "no publisher signature"), "preflight", f.seq))
		var p runsPage
		f.getJSON(t, "/api/v1/runs", &p)
		if got := p.ids(); got != "run-d:FAILED run-c:SUCCESS run-b:FAILED run-a:SUCCESS" {
			t.Fatalf("runs: %s", got)
		}
		for _, id := range []string{"garbage-1", "refused-1"} {
			if code, _, body := f.get(t, "/api/v1/runs/"+id); code != http.StatusNotFound {
				t.Errorf("GET /api/v1/runs/%s: %d %s; want 404", id, code, body)
			}
		}
		var dl struct {
			DeadLetters []struct {
				Seq             uint64 `json:"seq"`
				RunID           string `json:"run_id"`
				Consumer        string `json:"consumer"`
				Reason          string `json:"reason"`
				OriginalSubject string `json:"original_subject"`
			} `json:"dead_letters"`
		}
		f.getJSON(t, "/api/v1/dead-letters", &dl)
		if len(dl.DeadLetters) != 2 || dl.DeadLetters[0].RunID != "refused-1" || dl.DeadLetters[1].RunID != "garbage-1" ||
			!strings.Contains(dl.DeadLetters[1].Reason, "undecodable") || dl.DeadLetters[1].Consumer != "preflight" ||
			dl.DeadLetters[1].OriginalSubject != "runbook.garbage-1.change.requested" {
			t.Fatalf("dead letters: %+v", dl.DeadLetters)
		}
		f.getJSON(t, "/api/v1/dead-letters?limit=1", &dl)
		if len(dl.DeadLetters) != 1 || dl.DeadLetters[0].RunID != "refused-1" {
			t.Fatalf("newest dead letter: %+v", dl.DeadLetters)
		}
		if code, _, _ := f.get(t, "/api/v1/dead-letters?limit=0"); code != http.StatusBadRequest {
			t.Errorf("limit=0: %d", code)
		}
	})
}

func deadLettered(consumer, subject string, seq uint64, reason string) *runbookv1.Event_EventDeadLettered {
	return &runbookv1.Event_EventDeadLettered{EventDeadLettered: &runbookv1.DeadLettered{
		Consumer: consumer, Reason: reason, OriginalSubject: subject, OriginalSequence: seq, Deliveries: 1}}
}
