package deployer_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Rollback steps see the run's own backup directory (from its backup.done)
// as RUNBOOK_BACKUP_DIR, and a restore step copies a file back from it.
func TestRollbackUsesTheRunsBackup(t *testing.T) {
	t.Parallel()
	h := start(t)
	run := "R-BACKUP"
	dir := t.TempDir()
	content := "release: v2.4.0\n"
	sum := sha256.Sum256([]byte(content))
	if err := os.WriteFile(filepath.Join(dir, "current-release.json"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	md := fmt.Sprintf(`{"timestamp": "2025-09-23T02:00:00Z", "operator": "ops", "environment": "production", "backup_type": "pre-flight",
  "files": ["current-release.json"], "run_id": %q, "change_id": "CR-T",
  "file_details": [{"name": "current-release.json", "size": %d, "sha256": %q}]}`, run, len(content), hex.EncodeToString(sum[:]))
	if err := os.WriteFile(filepath.Join(dir, "backup_metadata.json"), []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "current-release.json")
	if err := os.WriteFile(target, []byte("release: v2.4.1-bad\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	planYAML := fmt.Sprintf(`change_request: {id: CR-T, title: backup test, type: maintenance, priority: low}
preflight:
  backup:
    dir: %q
    steps:
      - files: [/srv/estimator/current-release.json]
rollback_plan:
  rollback_steps:
    - name: where
      command: {argv: [sh, -c, 'echo "$RUNBOOK_BACKUP_DIR" >> "$0"', %q]}
    - name: put the release back
      restore: {file: current-release.json, to: %q}
deploy:
  steps:
    - {name: noop, command: {argv: ["true"]}}
`, filepath.Dir(dir), h.log, target)
	h.publish(t, changeRequested(run, planYAML),
		eventbus.New(run, &runbookv1.Event_BackupDone{BackupDone: &runbookv1.BackupDone{Dir: dir, Files: []string{"current-release.json"}}}),
		eventbus.New(run, &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}}),
		rollbackRequested(run, "operator"))
	h.waitFor(t, run, "rollback.done")
	if got := h.ran(t); len(got) != 1 || got[0] != dir {
		t.Errorf("RUNBOOK_BACKUP_DIR = %v, want %s", got, dir)
	}
	if got, _ := os.ReadFile(target); string(got) != content {
		t.Errorf("after the rollback the target holds %q, want the backed-up %q", got, content)
	}
	hist := h.count(t, run, "rollback.step.succeeded")
	if hist != 2 {
		t.Errorf("%d rollback steps succeeded, want 2", hist)
	}
}
