package deployer

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/deployer/steps"
)

type sink struct {
	mu   sync.Mutex
	outs []*runbookv1.StepOutput
	ids  []string
	gate chan struct{} // when set, each publish waits for it
	err  error
}

func (k *sink) pub(_ context.Context, ev *runbookv1.Event) error {
	if k.gate != nil {
		<-k.gate
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.outs = append(k.outs, ev.GetDeployStepOutput())
	k.ids = append(k.ids, ev.GetId())
	return k.err
}

func (k *sink) text() string {
	var b strings.Builder
	for _, o := range k.outs {
		b.WriteString(o.GetText())
	}
	return b.String()
}

func newTestStream(k *sink, red *steps.Redactor) *outputStream {
	return newOutputStream(context.Background(), k.pub, slog.New(slog.DiscardHandler), "R", "rollback", 2, 3, red)
}

func TestOutputLongLineGoesOutInPieces(t *testing.T) {
	t.Parallel()
	k := &sink{}
	o := newTestStream(k, nil)
	long := strings.Repeat("x", 10<<10)
	for i := 0; i < len(long); i += 1000 {
		o.write("stdout", []byte(long[i:min(i+1000, len(long))]))
	}
	o.close()
	if k.text() != long {
		t.Fatalf("got %d bytes, want %d", len(k.text()), len(long))
	}
	if len(k.outs) < 2 {
		t.Fatalf("%d events for a 10 KiB line", len(k.outs))
	}
	if k.ids[0] != "R/deploy.step.output/rollback/2/attempt-3/1" || k.outs[0].GetIndex() != 2 {
		t.Fatalf("id %s index %d", k.ids[0], k.outs[0].GetIndex())
	}
}

func TestOutputRedactsSecretSplitAcrossWrites(t *testing.T) {
	t.Parallel()
	k := &sink{}
	o := newTestStream(k, steps.NewRedactor(map[string]string{"DB_PASSWORD": "correct-horse"}))
	for _, w := range []string{"pw=corr", "ect-ho", "rse\nand again: correct", "-horse"} {
		o.write("stderr", []byte(w))
	}
	o.close()
	if got, want := k.text(), "pw=[REDACTED:DB_PASSWORD]\nand again: [REDACTED:DB_PASSWORD]"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	for _, out := range k.outs {
		if out.GetStream() != "stderr" {
			t.Fatalf("stream %q", out.GetStream())
		}
	}
}

func TestOutputBudgetEndsWithTruncationNote(t *testing.T) {
	t.Parallel()
	k := &sink{}
	o := newTestStream(k, nil)
	line := strings.Repeat("y", 999) + "\n"
	for range 200 {
		o.write("stdout", []byte(line))
	}
	o.close()
	last := k.outs[len(k.outs)-1].GetText()
	body := strings.TrimSuffix(k.text(), last)
	if len(body) > outputBudget || len(body) < outputBudget-len(line) {
		t.Fatalf("streamed %d bytes", len(body))
	}
	if !strings.HasSuffix(body, "\n") {
		t.Fatal("budget cut inside a line")
	}
	if want := "… output truncated ("; !strings.HasPrefix(last, want) || !strings.Contains(last, "bytes not streamed") {
		t.Fatalf("last %q", last)
	}
}

func TestOutputNeverBlocksTheCommand(t *testing.T) {
	t.Parallel()
	k := &sink{gate: make(chan struct{})}
	o := newTestStream(k, nil)
	line := strings.Repeat("z", outputBatch) + "\n"
	// The publisher is stuck on the first batch: writes fill the queue,
	// then are dropped, and none of them waits.
	for range outputQueue + 50 {
		o.write("stdout", []byte(line))
	}
	o.mu.Lock()
	full, dropped := o.full, o.dropped
	o.mu.Unlock()
	if !full || dropped == 0 {
		t.Fatalf("full %v dropped %d", full, dropped)
	}
	close(k.gate)
	o.close()
	if last := k.outs[len(k.outs)-1].GetText(); !strings.HasPrefix(last, "… output truncated (") {
		t.Fatalf("last %q", last)
	}
}

func TestOutputPublishErrorStopsStreaming(t *testing.T) {
	t.Parallel()
	k := &sink{err: errors.New("nats down")}
	o := newTestStream(k, nil)
	line := strings.Repeat("e", outputBatch) + "\n"
	for range 5 {
		o.write("stdout", []byte(line))
	}
	o.close()
	if len(k.outs) != 1 {
		t.Fatalf("%d publishes after the first failed", len(k.outs))
	}
}
