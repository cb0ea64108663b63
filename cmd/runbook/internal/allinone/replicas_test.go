package allinone_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
	"github.com/kis-core/runbook/eventbus/natstest"
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

// crossReplicaPlan: one long deploy step that records its pid, one quick
// rollback step.
const crossReplicaPlan = `change_request: {id: CR-CROSS, title: "a rollback taken by another replica", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
deploy:
  steps:
    - {name: long, timeout: 2m, command: {shell: 'echo $$ > %[1]q; exec sleep 60'}}
rollback_plan:
  rollback_steps:
    - {name: undo, command: {argv: ["true"]}}
`

// A rollback requested while another replica runs the deploy step: replica
// A takes the deploy (B gives deploys back), replica B the rollback request
// (A gives those back). A sees rollback.started and kills its step's
// process group within a second; B's first rollback step starts only once
// the deploy's outcome is in the stream; each replica names itself.
func TestRollbackStopsADeployInAnotherReplica(t *testing.T) {
	p := startPipeline(t, func(o *allinone.Options) { o.Without = []string{"deployer"} })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	refuse := map[string]string{"A": "rollback.requested", "B": "preflight.passed"}
	for _, name := range []string{"A", "B"} {
		id, err := auth.Open(p.srv.Creds("deployer"))
		if err != nil {
			t.Fatal(err)
		}
		nc, err := eventbus.Connect(p.srv.NATSURL(), "deployer-"+name, id.Options()...)
		if err != nil {
			t.Fatal(err)
		}
		bus, err := eventbus.NewBus(ctx, nc, eventbus.Options{Source: eventbus.SourceOf("deployer", name), Signer: id.KP})
		if err != nil {
			t.Fatal(err)
		}
		svc := deployer.New(bus, deployer.Options{StateDir: t.TempDir(), Consumer: eventbus.ConsumerOptions{
			Backoff: []time.Duration{20 * time.Millisecond},
			Fault: func(ev *runbookv1.Event) error {
				if ev.GetType() == refuse[name] {
					return fmt.Errorf("test: replica %s leaves %s to the other one", name, ev.GetType())
				}
				return nil
			},
		}}, nil, nil, nil)
		wg.Go(func() {
			if err := svc.Run(ctx); err != nil {
				t.Errorf("deployer %s: %v", name, err)
			}
			nc.Close()
		})
	}
	t.Cleanup(func() { cancel(); wg.Wait() })

	pidFile := filepath.Join(t.TempDir(), "pid")
	run := p.submit(t, []byte(fmt.Sprintf(crossReplicaPlan, pidFile)))
	var pid int
	natstest.Eventually(t, 30*time.Second, "the deploy step running in replica A", func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	// The monitor asks for the rollback.
	mid, err := auth.Open(p.srv.Creds("monitor"))
	if err != nil {
		t.Fatal(err)
	}
	mnc, err := eventbus.Connect(p.srv.NATSURL(), "monitor-test", mid.Options()...)
	if err != nil {
		t.Fatal(err)
	}
	defer mnc.Close()
	mbus, err := eventbus.NewBus(ctx, mnc, eventbus.Options{Source: "monitor/test", Signer: mid.KP})
	if err != nil {
		t.Fatal(err)
	}
	rr := eventbus.New(run, &runbookv1.Event_RollbackRequested{RollbackRequested: &runbookv1.RollbackRequested{Reason: "error_rate breached", RequestedBy: "monitor"}}, "monitor")
	if _, err := mbus.Publish(ctx, rr); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, run, "rollback.started")
	rs, _ := p.bus.LastEvent(ctx, run, "rollback.started")
	natstest.Eventually(t, 5*time.Second, "the deploy step's process killed", func() bool {
		return syscall.Kill(pid, 0) != nil
	})
	gone := time.Now()
	if took := gone.Sub(rs.Event.GetTime().AsTime()); took > time.Second {
		t.Errorf("the deploy step's process died %s after rollback.started, want within 1s", took.Round(time.Millisecond))
	}
	p.waitFor(t, run, "rollback.done")
	evs := p.history(t, run)
	failed, firstUndo := index(evs, "deploy.failed"), index(evs, "rollback.step.started")
	if failed < 0 || firstUndo < failed {
		t.Errorf("deploy.failed at %d, the first rollback step at %d: the deploy's outcome must come first: %v", failed, firstUndo, types(evs))
	}
	for _, e := range evs {
		switch {
		case e.GetType() == "deploy.step.started" && e.GetSource() != "deployer/A",
			e.GetType() == "rollback.started" && e.GetSource() != "deployer/B":
			t.Errorf("%s published by %s", e.GetType(), e.GetSource())
		}
	}
	t.Logf("step process gone %s after rollback.started (deploy.failed: %q)", gone.Sub(rs.Event.GetTime().AsTime()).Round(time.Millisecond), evs[failed].GetDeployFailed().GetError())
}
