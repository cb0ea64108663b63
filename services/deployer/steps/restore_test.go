package steps_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/services/deployer/steps"
)

// backupDir makes a backup directory as the preflight service leaves it:
// the files and a backup_metadata.json with their sha256.
func backupDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	var names, details []string
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(content))
		names = append(names, fmt.Sprintf("%q", name))
		details = append(details, fmt.Sprintf(`{"name": %q, "size": %d, "sha256": %q}`, name, len(content), hex.EncodeToString(sum[:])))
	}
	md := fmt.Sprintf(`{"timestamp": "2025-09-23T02:00:00Z", "operator": "ops", "environment": "production", "backup_type": "pre-flight",
"files": [%s], "run_id": "R", "change_id": "CR", "file_details": [%s]}`, strings.Join(names, ","), strings.Join(details, ","))
	if err := os.WriteFile(filepath.Join(dir, "backup_metadata.json"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func restoreStep(file, to string) plan.Step {
	return plan.Step{Name: "restore " + file, Restore: &plan.RestoreStep{File: file, To: to}}
}

func TestRestore(t *testing.T) {
	t.Parallel()
	x := &steps.Executor{}
	dir := backupDir(t, map[string]string{"nginx.conf": "worker_processes 4;\n"})
	target := filepath.Join(t.TempDir(), "nginx.conf")
	if err := os.WriteFile(target, []byte("broken by the deploy"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{steps.BackupDirEnv: dir}

	res := x.Run(context.Background(), restoreStep("nginx.conf", target), env)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	got, _ := os.ReadFile(target)
	if string(got) != "worker_processes 4;\n" || !strings.Contains(res.OutputTail, "verified") {
		t.Errorf("target = %q, output %q", got, res.OutputTail)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want the backed-up file's 0640", fi.Mode().Perm())
	}
	// Again: a restore is safe to redo.
	if res := x.Run(context.Background(), restoreStep("nginx.conf", target), env); res.Err != nil {
		t.Fatal(res.Err)
	}
	// Into a directory, like cp.
	into := t.TempDir()
	if res := x.Run(context.Background(), restoreStep("nginx.conf", into), env); res.Err != nil {
		t.Fatal(res.Err)
	}
	if got, _ := os.ReadFile(filepath.Join(into, "nginx.conf")); string(got) != "worker_processes 4;\n" {
		t.Errorf("into a directory: %q", got)
	}
	if entries, _ := os.ReadDir(filepath.Dir(target)); len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestRestoreRefuses(t *testing.T) {
	t.Parallel()
	x := &steps.Executor{}
	dir := backupDir(t, map[string]string{"a.json": "{}"})
	target := filepath.Join(t.TempDir(), "a.json")
	if err := os.WriteFile(target, []byte("current"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir, file, want string
		tamper                bool
	}{
		{"no backup", "", "a.json", "this run has no backup", false},
		{"not in the backup", dir, "b.json", "not in the run's backup", false},
		{"outside the backup", dir, "../a.json", "not a name inside the backup directory", false},
		{"changed since", dir, "a.json", "the backup was changed after it was made", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.tamper {
				if err := os.WriteFile(filepath.Join(dir, "a.json"), []byte(`{"x": 1}`), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			res := x.Run(context.Background(), restoreStep(tc.file, target), map[string]string{steps.BackupDirEnv: tc.dir})
			if res.Err == nil || !strings.Contains(res.Err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", res.Err, tc.want)
			}
			if got, _ := os.ReadFile(target); string(got) != "current" {
				t.Errorf("target changed to %q", got)
			}
		})
	}
}
