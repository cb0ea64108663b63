package backup_test

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus/backup"
)

// A secret of the plan (Run.Secrets) printed by a failing backup command,
// as is and in base64, is redacted from the step's message and the error
// as a deploy step's output is ([REDACTED:NAME]).
func TestBackupCommandRedactsLikeDeploySteps(t *testing.T) {
	t.Parallel()
	const secret = "pg-Dump-Passw0rd-77"
	b64 := base64.StdEncoding.EncodeToString([]byte(secret))
	r := &backup.Runner{Now: func() time.Time { return clock }, BaseEnv: []string{"PATH=" + os.Getenv("PATH"), "PGAUTH=" + secret}}
	res, err := r.Run(context.Background(), plan.Backup{Dir: t.TempDir(), Steps: []plan.BackupStep{
		{Name: "database", Command: sh(`echo "login with $PGAUTH (` + b64 + `) refused" >&2; exit 2`)},
	}}, backup.Run{RunID: "R-SECRET", Secrets: map[string]string{"PGAUTH": secret}})
	var se *backup.StepError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v", err)
	}
	msg := res.Steps[0].Message
	for _, text := range []string{err.Error(), msg} {
		if strings.Contains(text, secret) || strings.Contains(text, b64) {
			t.Fatalf("the secret shows: %q", text)
		}
	}
	if !strings.Contains(msg, "login with [REDACTED:PGAUTH] ([REDACTED:PGAUTH]) refused") {
		t.Fatalf("message %q: want both forms redacted by name", msg)
	}
}

// A backup command that leaves a child in the background is killed as a
// whole process group at the step's timeout: the child is gone too.
func TestBackupCommandTimeoutKillsTheGroup(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skipf("no /proc: %v", err)
	}
	pidFile := filepath.Join(t.TempDir(), "child")
	slow := plan.BackupStep{Name: "slow", Timeout: plan.Duration{Duration: 300 * time.Millisecond, Raw: "300ms"},
		Command: sh("sleep 30 & echo $! > " + pidFile + "; wait")}
	t0 := time.Now()
	_, err := runner().Run(context.Background(), plan.Backup{Dir: t.TempDir(), Steps: []plan.BackupStep{slow}}, backup.Run{RunID: "R-GROUP"})
	if err == nil || !strings.Contains(err.Error(), "timed out after 300ms") || time.Since(t0) > 5*time.Second {
		t.Fatalf("slow step: %v after %s", err, time.Since(t0))
	}
	b, rerr := os.ReadFile(pidFile)
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	if rerr != nil || perr != nil {
		t.Fatalf("pid file %q: %v %v", b, rerr, perr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for running(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("background child %d of the timed-out backup still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// running reports whether pid is a live process (not gone, not a zombie).
func running(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}
