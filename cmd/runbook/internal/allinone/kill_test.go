package allinone_test

import (
	"bufio"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/eventbus/natstest"
)

// killPlan has five deploy steps and two rollback steps; each appends
// "<run> <list> <index>" to the file %[1]s. Deploy steps 1 and 3 are not
// idempotent: they must never run twice, whatever happens to the deployer.
// The rollback steps are idempotent so a rollback cut short still finishes.
const killPlan = `change_request: {id: CR-KILL, title: "kill test", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
deploy:
  steps:
    - {name: s0, idempotent: true, command: {argv: [sh, -c, 'sleep 0.1; echo "$RUNBOOK_RUN_ID $RUNBOOK_PHASE $RUNBOOK_STEP" >> "$0"', %[1]q]}}
    - {name: s1, command: {argv: [sh, -c, 'sleep 0.1; echo "$RUNBOOK_RUN_ID $RUNBOOK_PHASE $RUNBOOK_STEP" >> "$0"', %[1]q]}}
    - {name: s2, idempotent: true, command: {argv: [sh, -c, 'sleep 0.1; echo "$RUNBOOK_RUN_ID $RUNBOOK_PHASE $RUNBOOK_STEP" >> "$0"', %[1]q]}}
    - {name: s3, command: {argv: [sh, -c, 'sleep 0.1; echo "$RUNBOOK_RUN_ID $RUNBOOK_PHASE $RUNBOOK_STEP" >> "$0"', %[1]q]}}
    - {name: s4, idempotent: true, command: {argv: [sh, -c, 'sleep 0.1; echo "$RUNBOOK_RUN_ID $RUNBOOK_PHASE $RUNBOOK_STEP" >> "$0"', %[1]q]}}
rollback_plan:
  rollback_steps:
    - {name: r0, idempotent: true, command: {argv: [sh, -c, 'echo "$RUNBOOK_RUN_ID $RUNBOOK_PHASE $RUNBOOK_STEP" >> "$0"', %[1]q]}}
    - {name: r1, idempotent: true, command: {argv: [sh, -c, 'echo "$RUNBOOK_RUN_ID $RUNBOOK_PHASE $RUNBOOK_STEP" >> "$0"', %[1]q]}}
`

// sideEffects counts the lines of a step log: key "<run> <list> <index>".
func sideEffects(t testing.TB, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return map[string]int{}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out[l]++
		}
	}
	return out
}

// The deployer, a separate process, is killed with SIGKILL at random moments
// while runs of a five-step plan go through, and restarted each time. Every
// run still ends SUCCESS or ROLLED_BACK with one report, no step that is not
// idempotent ran twice, and no event id is in the stream twice.
// RUNBOOK_KILLS sets the number of kills (default 5; `make kill-test`: 20).
func TestDeployerKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the deployer binary")
	}
	kills := 5
	if v := os.Getenv("RUNBOOK_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("RUNBOOK_KILLS=%q", v)
		}
		kills = n
	}
	seed := time.Now().UnixNano()
	if v := os.Getenv("RUNBOOK_KILL_SEED"); v != "" {
		seed, _ = strconv.ParseInt(v, 10, 64)
	}
	t.Logf("kill seed %d (RUNBOOK_KILL_SEED=%d reproduces the schedule), %d kills", seed, seed, kills)
	rng := rand.New(rand.NewSource(seed))

	depBin := buildService(t, "deployer")
	s := serveWithout(t, "deployer")
	bus := natstest.Bus(t, s, "kill")
	p := &pipeline{bus: bus}

	dir := t.TempDir()
	logPath := filepath.Join(dir, "deployer.log")
	dep := startProc(t, depBin, logPath, "--nats-url", s.ClientURL(), "--metrics-listen", "127.0.0.1:0", "--ack-wait", "2s", "--insecure-no-auth")

	effects := filepath.Join(dir, "steps.log")
	data := []byte(fmt.Sprintf(killPlan, effects))
	var runs []string
	runs = append(runs, p.submit(t, data), p.submit(t, data))
	for range kills {
		time.Sleep(time.Duration(rng.Int63n(int64(1500 * time.Millisecond)))) // a random moment, not a wait for anything
		dep.restart()                                                         // SIGKILL, then a new process
		runs = append(runs, p.submit(t, data))
	}

	statuses := map[string]int{}
	final := map[string]string{}
	for _, run := range runs {
		rr := p.report(t, run, 60*time.Second)
		statuses[rr.Status]++
		final[run] = rr.Status
		evs := p.history(t, run)
		if rr.Status != "SUCCESS" && rr.Status != "ROLLED_BACK" {
			t.Errorf("run %s ended %s: %v", run, rr.Status, types(evs))
		}
		if c := countType(evs, "report.ready"); c != 1 {
			t.Errorf("run %s has %d report.ready", run, c)
		}
		noDuplicateIDs(t, evs)
	}
	got := sideEffects(t, effects)
	for _, run := range runs {
		for _, i := range []int{1, 3} {
			if n := got[fmt.Sprintf("%s steps %d", run, i)]; n > 1 {
				t.Errorf("run %s: non-idempotent deploy step %d ran %d times", run, i, n)
			}
		}
		switch final[run] {
		case "SUCCESS": // every deploy step ran
			for i := range 5 {
				if got[fmt.Sprintf("%s steps %d", run, i)] == 0 {
					t.Errorf("run %s ended SUCCESS but deploy step %d never ran", run, i)
				}
			}
		case "ROLLED_BACK": // every rollback step ran
			for i := range 2 {
				if got[fmt.Sprintf("%s rollback %d", run, i)] == 0 {
					t.Errorf("run %s ended ROLLED_BACK but rollback step %d never ran", run, i)
				}
			}
		}
	}
	t.Logf("%d runs after %d kills: %v", len(runs), kills, statuses)
	if t.Failed() {
		b, _ := os.ReadFile(logPath)
		t.Logf("deployer log:\n%s", b)
	}
}
