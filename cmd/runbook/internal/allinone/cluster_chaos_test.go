package allinone_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter/pgstore/pgtest"
)

// TestClusterChaos: the five services × 2 replicas, each its own process,
// on a 3-node NATS cluster with R3 streams and one PostgreSQL read model;
// RUNBOOK_CHAOS_RUNS runs (`make test` runs 6 alone, `make chaos` 30), good and bad
// releases alternating, each on its own target, while every 1–2 s a
// random service process is killed with SIGKILL and started again or a
// NATS node is stopped and restarted. Afterwards: every run final with
// exactly one report; no event id twice; the plan's non-idempotent step
// ran at most once per run; no rollback step before its deploy's outcome
// was in the stream; no bad release ended SUCCESS; `audit verify` passes.
func TestClusterChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("builds five binaries and runs a cluster")
	}
	// Thirteen processes on two cores: run alone (make test and make chaos
	// do), never beside other packages' timing-sensitive tests.
	runs, err := strconv.Atoi(os.Getenv("RUNBOOK_CHAOS_RUNS"))
	if err != nil || runs <= 0 {
		t.Skip("SKIPPED here: runs alone — `make test` runs it with RUNBOOK_CHAOS_RUNS=6, `make chaos` with 30")
	}
	dbURL := pgtest.URL(t)
	rig := startCluster(t, dbURL)
	c, procs, p := rig.c, rig.procs, rig.p
	bus, ctx := p.bus, context.Background()

	// The chaos: a SIGKILLed service process, or a stopped NATS node, every
	// 1–2 s until the runs are done.
	stop := make(chan struct{})
	var chaosDone sync.WaitGroup
	var kills, nodeStops int
	var stopOnce sync.Once
	stopChaos := func() {
		stopOnce.Do(func() { close(stop) })
		chaosDone.Wait()
	}
	t.Cleanup(stopChaos) // before the temp dirs go, when the test fails early
	chaosDone.Go(func() {
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 12))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(1000+rng.IntN(1000)) * time.Millisecond):
			}
			if rng.IntN(3) == 0 {
				n := rng.IntN(c.Size())
				c.Stop(n)
				nodeStops++
				select {
				case <-stop:
				case <-time.After(2 * time.Second):
				}
				if err := c.Restart(n); err != nil {
					t.Error(err)
				}
				// One node lost at a time (what R3 tolerates): the next
				// fault comes once the node is back in the meta group.
				c.WaitCurrent(10 * time.Second)
				continue
			}
			procs[rng.IntN(len(procs))].restart()
			kills++
		}
	})

	ledger := filepath.Join(t.TempDir(), "ledger")
	type runInfo struct {
		id  string
		bad bool
	}
	var all []runInfo
	for i := range runs {
		bad := i%2 == 1
		tg := startTarget(t)
		name := map[bool]string{false: "good.yaml", true: "bad-release.yaml"}[bad]
		plan := examplePlan(t, name, tg, func(s string) string {
			s = shorten(s)
			// A step that must never run twice for one run: it appends the
			// run's id to a ledger.
			return strings.Replace(s, "deploy:\n  steps:\n", fmt.Sprintf("deploy:\n  steps:\n    - name: \"ledger\"\n      command: {shell: 'echo \"$RUNBOOK_RUN_ID\" >> %s'}\n", ledger), 1)
		})
		all = append(all, runInfo{id: p.submit(t, plan), bad: bad})
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range all {
				h, err := bus.RunHistory(context.Background(), r.id)
				t.Logf("run %s (bad %v): %v %v", r.id, r.bad, types(eventsOf(h)), err)
			}
		}
	})
	final := map[string]*runbookv1.ReportReady{}
	natstest.Eventually(t, time.Duration(runs)*30*time.Second+2*time.Minute, "every run reported", func() bool {
		for _, r := range all {
			if final[r.id] != nil {
				continue
			}
			if e, err := bus.LastEvent(ctx, r.id, "report.ready"); err == nil && e != nil {
				final[r.id] = e.Event.GetReportReady()
			}
		}
		return len(final) == len(all)
	})
	stopChaos()
	for i := range c.Size() {
		if c.Node(i) == nil {
			c.Start(t, i)
		}
	}

	ledgerLines, _ := os.ReadFile(ledger)
	perRun := map[string]int{}
	for _, l := range strings.Fields(string(ledgerLines)) {
		perRun[l]++
	}
	counts := map[string]int{}
	for _, r := range all {
		evs := p.history(t, r.id)
		noDuplicateIDs(t, evs)
		if n := countType(evs, "report.ready"); n != 1 {
			t.Errorf("run %s: %d report.ready", r.id, n)
		}
		if perRun[r.id] > 1 {
			t.Errorf("run %s: the non-idempotent ledger step ran %d times", r.id, perRun[r.id])
		}
		if rs := index(evs, "rollback.step.started"); rs >= 0 {
			if out := max(index(evs, "deploy.done"), index(evs, "deploy.failed")); out < 0 || out > rs {
				t.Errorf("run %s: a rollback step started before the deploy's outcome was in the stream: %v", r.id, types(evs))
			}
		}
		st := final[r.id].GetStatus()
		if r.bad && st == "SUCCESS" {
			t.Errorf("run %s: the bad release ended SUCCESS", r.id)
		}
		counts[map[bool]string{false: "good", true: "bad"}[r.bad]+" "+st]++
	}
	t.Logf("chaos: %d runs, %d service processes killed, %d NATS node stops; outcomes %v", len(all), kills, nodeStops, counts)

	var out, errOut bytes.Buffer
	if code := cli.Execute(ctx, []string{"audit", "verify", "--nats-url", c.URLs(), "--database-url", dbURL, "--creds", c.Store.SeedPath("admin"), "--keyring", c.Store.KeyringPath()}, &out, &errOut); code != 0 {
		t.Fatalf("audit verify: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	t.Log(strings.TrimSpace(out.String()))
}
