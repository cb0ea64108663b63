package steps_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/services/deployer/steps"
)

// A backup step run by the executor: with no backup directory yet, it
// makes the run's under the plan's backup dir, named by the deploy's
// start; its output says what each entry did (a secret of an entry's env
// redacted) and what joined the backup; run again (a retry), it is found
// taken and runs nothing.
func TestBackupStepRun(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	ran := filepath.Join(t.TempDir(), "ran")
	p, issues := plan.Parse("p.yml", []byte(`deploy:
  steps:
    - {command: {argv: ["true"]}}
    - name: backup
      backup:
        dir: `+root+`
        steps:
          - name: database
            command:
              shell: 'echo data | gzip > "$BACKUP_DIR/out.gz"; echo "as $PGPASSWORD"; echo x >> `+ran+`'
              env: {PGPASSWORD: s3cret-Value-77}
`))
	if p == nil {
		t.Fatal(issues)
	}
	started := time.Date(2025, 9, 23, 2, 0, 7, 0, time.UTC)
	x := (&steps.Executor{BaseEnv: []string{"PATH=" + os.Getenv("PATH")}}).ForPlan(p).ForRun(steps.RunInfo{Operator: "alice", DeployStarted: started})
	env := map[string]string{"RUNBOOK_RUN_ID": "R-X", "RUNBOOK_CHANGE_ID": "CR-X", "RUNBOOK_PHASE": "steps", "RUNBOOK_STEP": "1"}
	res := x.Run(context.Background(), p.Deploy.Steps[1], env)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	dir := filepath.Join(root, "R-X-20250923_020007")
	if res.Backup == nil || res.Backup.Dir != dir || res.Backup.Metadata.Operator != "alice" || res.Backup.Metadata.Backups[0].Step != "deploy.steps[1]" {
		t.Fatalf("backup %+v", res.Backup)
	}
	if out := res.OutputTail; strings.Contains(out, "s3cret-Value-77") || !strings.Contains(out, "database [command] PASS: as [REDACTED:PGPASSWORD]") ||
		!strings.Contains(out, "backed up 1 file(s): out.gz into the run's backup "+dir+"; backup_metadata.json lists 1 file(s)") {
		t.Errorf("output:\n%s", out)
	}
	env[steps.BackupDirEnv] = dir
	again := x.Run(context.Background(), p.Deploy.Steps[1], env)
	if again.Err != nil || again.Backup == nil || !again.Backup.AlreadyTaken || !strings.Contains(again.OutputTail, "already taken by an earlier attempt") {
		t.Errorf("again: %+v", again)
	}
	if b, _ := os.ReadFile(ran); string(b) != "x\n" {
		t.Errorf("the command ran %q", b)
	}
	// Without its place in the run data a backup step cannot be told
	// apart from another: it refuses to run.
	if res := x.Run(context.Background(), p.Deploy.Steps[1], map[string]string{"RUNBOOK_RUN_ID": "R-X"}); res.Err == nil || !strings.Contains(res.Err.Error(), "no step place") {
		t.Errorf("without RUNBOOK_PHASE: %v", res.Err)
	}
}
