package allinone_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/deployer"
)

// replicaPlan: two deploy steps, the second fails when %[2]s is "false";
// two rollback steps. Every step that runs appends "<run> <list> <index>"
// to %[1]s.
const replicaPlan = `change_request: {id: CR-REPLICAS, title: "two deployers", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
deploy:
  steps:
    - {name: d0, command: {argv: [sh, -c, 'echo "$RUNBOOK_RUN_ID $RUNBOOK_PHASE $RUNBOOK_STEP" >> "$0"', %[1]q]}}
    - {name: d1, command: {argv: [sh, -c, 'echo "$RUNBOOK_RUN_ID $RUNBOOK_PHASE $RUNBOOK_STEP" >> "$0"; "$1"', %[1]q, %[2]q]}}
rollback_plan:
  rollback_steps:
    - {name: r0, command: {argv: [sh, -c, 'echo "$RUNBOOK_RUN_ID $RUNBOOK_PHASE $RUNBOOK_STEP" >> "$0"', %[1]q]}}
    - {name: r1, command: {argv: [sh, -c, 'echo "$RUNBOOK_RUN_ID $RUNBOOK_PHASE $RUNBOOK_STEP" >> "$0"', %[1]q]}}
`

// Two deployer replicas share the durable consumer of one stream: over 50
// runs, half of which fail their second step and roll back, every deploy
// and rollback step runs exactly once.
func TestTwoDeployerReplicas(t *testing.T) {
	p := startPipeline(t, func(o *allinone.Options) { o.Without = []string{"deployer"} })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	handled := make([]int, 2)
	var mu sync.Mutex
	for i := range 2 {
		id, err := auth.Open(p.srv.Creds("deployer"))
		if err != nil {
			t.Fatal(err)
		}
		nc, err := eventbus.Connect(p.srv.NATSURL(), fmt.Sprintf("deployer-%d", i), id.Options()...)
		if err != nil {
			t.Fatal(err)
		}
		bus, err := eventbus.NewBus(ctx, nc, eventbus.Options{Source: fmt.Sprintf("deployer/%d", i), Signer: id.KP})
		if err != nil {
			t.Fatal(err)
		}
		svc := deployer.New(bus, deployer.Options{
			Consumer: eventbus.ConsumerOptions{Fault: func(*runbookv1.Event) error {
				mu.Lock()
				handled[i]++
				mu.Unlock()
				return nil
			}},
		}, nil, nil, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := svc.Run(ctx); err != nil {
				t.Errorf("deployer %d: %v", i, err)
			}
			nc.Close()
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })

	effects := filepath.Join(t.TempDir(), "steps.log")
	good := []byte(fmt.Sprintf(replicaPlan, effects, "true"))
	bad := []byte(fmt.Sprintf(replicaPlan, effects, "false"))
	const n = 50
	runs := make([]string, n)
	var sub sync.WaitGroup
	for i := range n {
		sub.Add(1)
		go func() {
			defer sub.Done()
			if i%2 == 0 {
				runs[i] = p.submit(t, good)
			} else {
				runs[i] = p.submit(t, bad)
			}
		}()
	}
	sub.Wait()
	for i, run := range runs {
		want := "SUCCESS"
		if i%2 == 1 {
			want = "ROLLED_BACK"
		}
		if rr := p.report(t, run, 90*time.Second); rr.Status != want {
			t.Errorf("run %d (%s) ended %s, want %s: %v", i, run, rr.Status, want, types(p.history(t, run)))
		}
	}
	got := sideEffects(t, effects)
	for i, run := range runs {
		wantRollback := 0
		if i%2 == 1 {
			wantRollback = 1
		}
		for _, c := range []struct {
			key  string
			want int
		}{
			{run + " steps 0", 1}, {run + " steps 1", 1},
			{run + " rollback 0", wantRollback}, {run + " rollback 1", wantRollback},
		} {
			if got[c.key] != c.want {
				t.Errorf("%q ran %d times, want %d", c.key, got[c.key], c.want)
			}
		}
		noDuplicateIDs(t, p.history(t, run))
	}
	mu.Lock()
	t.Logf("events handled per replica: %v", handled)
	if handled[0] == 0 || handled[1] == 0 {
		t.Errorf("one replica handled nothing: %v", handled)
	}
	mu.Unlock()
}
