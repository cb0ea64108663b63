package procio

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// TestHelperService is not a test: run as a child process with
// PROCIO_HELPER_DIR set, it is a service that runs one tracked command
// (PROCIO_HELPER_SCRIPT) until it is killed.
func TestHelperService(t *testing.T) {
	dir := os.Getenv("PROCIO_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	ctx := TrackPids(context.Background(), dir, map[string]string{"run": "R1", "step": "long"})
	Run(ctx, Command{Shell: os.Getenv("PROCIO_HELPER_SCRIPT"), Env: []string{"PATH=" + os.Getenv("PATH")}})
	os.Exit(0)
}

func waitGone(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still runs", what, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A service killed with SIGKILL takes its running command with it (the
// parent-death signal), and its next start's sweep kills what the command
// left in its process group and names it from the pid file; a live
// service's pid files are left alone.
func TestKilledServiceLeavesNoOrphans(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal and /proc are Linux's")
	}
	t.Parallel()
	dir, files := t.TempDir(), t.TempDir()
	shPid, bgPid := filepath.Join(files, "sh"), filepath.Join(files, "bg")
	svc := exec.Command(os.Args[0], "-test.run=^TestHelperService$")
	svc.Env = append(os.Environ(), "PROCIO_HELPER_DIR="+dir,
		"PROCIO_HELPER_SCRIPT=echo $$ > "+shPid+"; sleep 60 & echo $! > "+bgPid+"; wait")
	if err := svc.Start(); err != nil {
		t.Fatal(err)
	}
	sh, bg := childPid(t, shPid), childPid(t, bgPid)

	// A live service's own command is not swept.
	live := TrackPids(context.Background(), dir, map[string]string{"run": "LIVE"})
	liveDone := make(chan Result, 1)
	livePid := make(chan int, 1)
	go func() {
		liveDone <- Run(live, Command{Argv: []string{"sleep", "60"}, OnStart: func(pid int) { livePid <- pid }})
	}()
	lp := <-livePid
	defer syscall.Kill(-lp, syscall.SIGKILL)

	if err := svc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = svc.Wait()
	waitGone(t, "the command (sh) of the killed service", sh)
	if !running(bg) {
		t.Fatal("the background child died with the service: the sweep below proves nothing")
	}
	orphans, err := SweepPidFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(orphans) != 1 || !orphans[0].Killed || orphans[0].Pgid != sh || orphans[0].Labels["run"] != "R1" || orphans[0].Labels["step"] != "long" {
		t.Fatalf("orphans %+v; want the killed service's group %d, killed, with its labels", orphans, sh)
	}
	waitGone(t, "the background child", bg)
	if !running(lp) {
		t.Fatal("the sweep killed a live service's command")
	}
	if again, err := SweepPidFiles(dir); err != nil || len(again) != 0 {
		t.Fatalf("second sweep: %+v, %v; want nothing", again, err)
	}
	_ = syscall.Kill(-lp, syscall.SIGKILL)
	<-liveDone
	if m, _ := filepath.Glob(filepath.Join(dir, "*.json")); len(m) != 0 {
		t.Fatalf("pid files left after their commands ended: %v", m)
	}
}
