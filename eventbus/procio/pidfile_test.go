package procio

import (
	"context"
	"fmt"
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
	if recs := liveRecords(t, dir); len(recs) != 0 {
		t.Fatalf("commands still recorded as running after they ended: %+v", recs)
	}
}

// liveRecords are the commands the pid files in dir record as running.
func liveRecords(t *testing.T, dir string) []PidRecord {
	t.Helper()
	recs, err := Recorded(dir)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// The journal records the commands running now, and stays small: it is
// rewritten with them when it outgrows journalCompactAt.
func TestPidJournalKeepsRunningCommandsAndCompacts(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	dir := t.TempDir()
	old := journalCompactAt
	journalCompactAt = 4 << 10
	t.Cleanup(func() { journalCompactAt = old })

	long := TrackPids(context.Background(), dir, map[string]string{"run": "LONG"})
	done := make(chan Result, 1)
	pidc := make(chan int, 1)
	go func() {
		done <- Run(long, Command{Argv: []string{"sleep", "60"}, OnStart: func(pid int) { pidc <- pid }})
	}()
	lp := <-pidc
	defer func() { _ = syscall.Kill(-lp, syscall.SIGKILL); <-done }()

	short := TrackPids(context.Background(), dir, map[string]string{"run": "SHORT"})
	for range 60 {
		if r := Run(short, Command{Argv: []string{"true"}}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	recs := liveRecords(t, dir)
	if len(recs) != 1 || recs[0].Pgid != lp || recs[0].Labels["run"] != "LONG" {
		t.Fatalf("recorded as running: %+v; want only the sleep (%d)", recs, lp)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.pids"))
	if len(files) != 1 {
		t.Fatalf("journals %v; want one for this process", files)
	}
	st, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 2*journalCompactAt {
		t.Fatalf("journal is %d bytes after 120 lines: not compacted (limit %d)", st.Size(), journalCompactAt)
	}
	// A live service's journal is not swept.
	if o, err := SweepPidFiles(dir); err != nil || len(o) != 0 || !running(lp) {
		t.Fatalf("sweep with the service alive: %+v, %v", o, err)
	}
}

func TestReadJournal(t *testing.T) {
	for _, c := range []struct {
		name, text string
		want       []int
	}{
		{"started and ended", `{"pgid":10,"start":5}` + "\n" + `{"ended":10,"start":5}` + "\n", nil},
		{"still running", `{"pgid":10,"start":5}` + "\n" + `{"pgid":11,"start":6}` + "\n" + `{"ended":10,"start":5}` + "\n", []int{11}},
		{"cut short by a kill", `{"pgid":10,"start":5}` + "\n" + `{"pgid":11,"st`, []int{10}},
		{"pid reused before the end line", `{"pgid":10,"start":5}` + "\n" + `{"pgid":10,"start":9}` + "\n" + `{"ended":10,"start":5}` + "\n", []int{10}},
		{"not ours", "garbage\n{\"pgid\":1}\n", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "1-1.pids")
			if err := os.WriteFile(path, []byte(c.text), 0o600); err != nil {
				t.Fatal(err)
			}
			recs, err := readJournal(path)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, r := range recs {
				got = append(got, r.Pgid)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("running %v; want %v", got, c.want)
			}
		})
	}
}

// A pid file of one command, as deployers before the journals left them,
// is still swept: its group killed when its service is gone.
func TestSweepKillsWhatAnOldPidFileNames(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc is Linux's")
	}
	dir := t.TempDir()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	orphan := exec.Command("sleep", "60")
	orphan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { _ = orphan.Wait(); close(waited) }()
	defer func() { _ = syscall.Kill(-orphan.Process.Pid, syscall.SIGKILL); <-waited }()
	start, err := procStart(orphan.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	rec := fmt.Sprintf(`{"pgid":%d,"start":%d,"owner_pid":%d,"owner_start":1,"command":"sleep 60","labels":{"run":"OLD"}}`,
		orphan.Process.Pid, start, gone.Process.Pid)
	if err := os.WriteFile(filepath.Join(dir, "old.json"), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := SweepPidFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(o) != 1 || !o[0].Killed || o[0].Labels["run"] != "OLD" {
		t.Fatalf("swept %+v; want the old file's group killed", o)
	}
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the old file's command still runs")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*")); len(m) != 0 {
		t.Fatalf("left after the sweep: %v", m)
	}
}
