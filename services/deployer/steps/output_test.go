package steps_test

import (
	"context"
	"sync"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/services/deployer/steps"
)

func TestRunOutputKeepsStreamsApart(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	got := map[string]string{}
	out := func(stream string, p []byte) {
		mu.Lock()
		defer mu.Unlock()
		got[stream] += string(p)
	}
	x := &steps.Executor{BaseEnv: []string{"PATH=/usr/bin:/bin"}}
	st := plan.Step{Name: "s", Command: &plan.Command{Argv: []string{"sh", "-c", "echo out; echo err >&2"}}}
	res := x.RunOutput(context.Background(), st, nil, out)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got["stdout"] != "out\n" || got["stderr"] != "err\n" {
		t.Fatalf("streams %q", got)
	}
	if res.OutputTail != "out\nerr" && res.OutputTail != "err\nout" {
		t.Fatalf("tail %q", res.OutputTail)
	}
}
