package deployer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/eventbus"
)

// outputOf returns the run's deploy.step.output events and the index in
// history of its first deploy.step.succeeded/failed.
func outputOf(t *testing.T, h *harness, run string) (outs []eventbus.Envelope, hist []eventbus.Envelope, outcome int) {
	t.Helper()
	hist, err := h.bus.RunHistory(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	outcome = -1
	for i, e := range hist {
		switch e.Event.Type {
		case "deploy.step.output":
			outs = append(outs, e)
			if outcome >= 0 {
				t.Errorf("output event %s after the step's outcome", e.Event.Id)
			}
		case "deploy.step.succeeded", "deploy.step.failed":
			if outcome < 0 {
				outcome = i
			}
		}
	}
	if outcome < 0 {
		t.Fatal("no step outcome")
	}
	return outs, hist, outcome
}

func TestStepOutputStreamsLive(t *testing.T) {
	t.Parallel()
	h := start(t)
	p := planWith(h.log, `    - name: talk
      command: {argv: [sh, -c, 'echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three']}
`, step("undo", ""))
	h.publish(t, changeRequested("O1", p), preflightPassed("O1"))
	h.waitFor(t, "O1", "deploy.done")
	outs, hist, outcome := outputOf(t, h, "O1")
	var text []string
	for _, e := range outs {
		o := e.Event.GetDeployStepOutput()
		if o.GetIndex() != 0 {
			t.Errorf("index %d", o.GetIndex())
		}
		if !strings.HasPrefix(e.Event.Id, "O1/deploy.step.output/steps/0/attempt-1/") {
			t.Errorf("id %s", e.Event.Id)
		}
		for _, l := range strings.Split(strings.TrimSuffix(o.GetText(), "\n"), "\n") {
			text = append(text, o.GetStream()+":"+l)
		}
	}
	if got := strings.Join(text, ","); got != "stdout:one,stderr:two,stdout:three" {
		t.Fatalf("output %q", got)
	}
	succ := hist[outcome].Event
	end := succ.GetTime().AsTime()
	first := outs[0].Event.GetTime().AsTime()
	// Live: the first line went out while the step still ran (it ran
	// ≥ 600 ms; "one" was printed at its start).
	if d := time.Duration(succ.GetDeployStepSucceeded().GetDurationMs()) * time.Millisecond; !first.Before(end.Add(-d / 3)) {
		t.Fatalf("first output at %s, step ended %s after %s: not live", first, end, d)
	}
}

func TestStepOutputIsBounded(t *testing.T) {
	t.Parallel()
	h := start(t)
	p := planWith(h.log, `    - name: flood
      command: {argv: [sh, -c, 'yes abcdefghijklmnopqrstuvwxyz0123456789 | head -c 1048576']}
`, step("undo", ""))
	h.publish(t, changeRequested("O2", p), preflightPassed("O2"))
	h.waitFor(t, "O2", "deploy.done")
	outs, _, _ := outputOf(t, h, "O2")
	total := 0
	for _, e := range outs {
		total += len(e.Event.GetDeployStepOutput().GetText())
	}
	if total > 70<<10 || total < 32<<10 {
		t.Fatalf("%d output events with %d bytes", len(outs), total)
	}
	last := outs[len(outs)-1].Event.GetDeployStepOutput().GetText()
	if !strings.HasPrefix(last, "… output truncated (") || !strings.Contains(last, "bytes not streamed") {
		t.Fatalf("last output %q", last)
	}
}

func TestStepOutputIsRedacted(t *testing.T) {
	t.Parallel()
	h := start(t)
	const secret = "hunter2-very-secret-value"
	// Printed whole, in two writes with a pause between (a split secret),
	// and on stderr.
	p := planWith(h.log, `    - name: leak
      command:
        argv: [sh, -c, 'echo "token=$API_TOKEN"; printf "%s" hunter2-very; sleep 0.4; printf "%s\n" -secret-value; echo "$API_TOKEN" >&2; printf "%s" "$API_TOKEN"']
        env: {API_TOKEN: `+secret+`}
`, step("undo", ""))
	h.publish(t, changeRequested("O3", p), preflightPassed("O3"))
	h.waitFor(t, "O3", "deploy.done")
	outs, _, _ := outputOf(t, h, "O3")
	all := ""
	for _, e := range outs {
		all += e.Event.GetDeployStepOutput().GetText()
	}
	for _, part := range []string{secret, "hunter2", "secret-value"} {
		if strings.Contains(all, part) {
			t.Fatalf("output leaks %q: %q", part, all)
		}
	}
	if n := strings.Count(all, "[REDACTED:API_TOKEN]"); n != 4 {
		t.Fatalf("%d redactions in %q", n, all)
	}
}
