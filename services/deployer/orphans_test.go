package deployer_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/eventbus/natstest"
	"github.com/kis-core/runbook/eventbus/procio"
)

// alive reports whether pid is a live process (not gone, not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// pidIn waits for a command to write its pid (and a newline) to file.
func pidIn(t *testing.T, file string) int {
	t.Helper()
	var pid int
	natstest.Eventually(t, 20*time.Second, "the pid in "+file, func() bool {
		b, err := os.ReadFile(file)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil
	})
	return pid
}

// deployerProc is the deployer binary run as its own process, to be killed
// with SIGKILL and started again; every start appends to one log.
type deployerProc struct {
	t    *testing.T
	bin  string
	args []string
	log  *os.File
	cmd  *exec.Cmd
}

func (p *deployerProc) start() {
	p.t.Helper()
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
}

func (p *deployerProc) kill9() {
	if p.cmd != nil && p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// The deployer, a process of its own, is killed with SIGKILL while a step
// runs `sh -c 'sleep 60 & …; echo $$ > pidfile; sleep 60'`: the step's
// command dies with it (parent-death signal) — the test polls until it is
// gone — while the background child left in its process group lives on
// until the deployer starts again: its start sweeps the pid file and kills
// the group, and the resumed run's journal says so on the interrupted
// attempt's deploy.step.failed before the run is rolled back.
func TestKilledDeployerLeavesNoOrphans(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the deployer binary")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal and /proc are Linux's")
	}
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "deployer")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/deployer").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	logf, err := os.OpenFile(filepath.Join(dir, "deployer.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	dep := &deployerProc{t: t, bin: bin, log: logf, args: []string{"--nats-url", s.ClientURL(), "--metrics-listen", "127.0.0.1:0",
		"--ack-wait", "2s", "--insecure-no-auth", "--state-dir", filepath.Join(dir, "state")}}
	dep.start()
	t.Cleanup(dep.kill9)
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("deployer log:\n%s", b)
		}
	}()

	pidFile, bgFile, ran := filepath.Join(dir, "step.pid"), filepath.Join(dir, "bg.pid"), filepath.Join(dir, "ran.log")
	script := fmt.Sprintf(`sleep 60 & echo $! > %s; echo $$ > %s; sleep 60`, bgFile, pidFile)
	p := planWith(ran, fmt.Sprintf("    - name: long\n      command: {shell: %q}\n", script), step("undo", ""))
	h := &harness{bus: bus, log: ran}
	h.publish(t, changeRequested("ORPH1", p), preflightPassed("ORPH1"))
	stepPid, bgPid := pidIn(t, pidFile), pidIn(t, bgFile)

	dep.kill9()
	natstest.Eventually(t, 10*time.Second, "the step's process gone with its deployer", func() bool { return !alive(stepPid) })
	if !alive(bgPid) {
		t.Fatal("the step's background child died with the deployer: the sweep below would prove nothing")
	}

	dep.start()
	h.waitFor(t, "ORPH1", "rollback.done")
	natstest.Eventually(t, 10*time.Second, "the background child swept", func() bool { return !alive(bgPid) })
	f, err := bus.LastEvent(context.Background(), "ORPH1", "deploy.step.failed")
	if err != nil || f == nil {
		t.Fatalf("no deploy.step.failed: %v", err)
	}
	se := f.Event.GetDeployStepFailed()
	if se.GetAttempt() != 1 || se.GetName() != "long" ||
		!strings.Contains(se.GetError(), "attempt interrupted: the deployer running it stopped") ||
		!strings.Contains(se.GetError(), "was still running and was killed at this deployer's start (pid file swept)") {
		t.Fatalf("the interrupted attempt's journal line: %+v", se)
	}
	t.Logf("journal: deploy.step.failed %q attempt %d: %s", se.GetName(), se.GetAttempt(), se.GetError())
	if d, _ := bus.LastEvent(context.Background(), "ORPH1", "deploy.failed"); d == nil || !strings.Contains(d.Event.GetDeployFailed().GetError(), "not marked idempotent") {
		t.Fatalf("deploy.failed: %+v", d)
	}
	if recs, err := procio.Recorded(filepath.Join(dir, "state", "pids")); err != nil || len(recs) != 0 {
		t.Errorf("commands still recorded as running: %+v, %v", recs, err)
	}
}
