package steps

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus/backup"
)

// RunInfo is what a backup step records of its run besides runEnv.
type RunInfo struct {
	// Operator is backup_metadata.json's operator: who asked for the change
	// (change.requested's actor; default "system").
	Operator string
	// Environment is backup_metadata.json's environment (default
	// "production").
	Environment string
	// DeployStarted is deploy.started's time: it names the backup directory
	// a backup step makes when pre-flight made none, the same on every
	// attempt.
	DeployStarted time.Time
}

// ForRun is x for the steps of one run (see RunInfo).
func (x *Executor) ForRun(ri RunInfo) *Executor {
	y := *x
	y.runInfo = ri
	return &y
}

// backup takes a backup step's backup now into the run's backup directory
// (runEnv's RUNBOOK_BACKUP_DIR, from its backup.done; made under the
// plan's backup dir when the run has none), with package backup, as
// pre-flight takes its own: its files and backup_metadata.json are where
// restore steps look. The step is identified by its place in the plan
// (RUNBOOK_PHASE is its list, RUNBOOK_STEP its index): a retry finds it
// taken and runs nothing. The result's Backup is the directory as it now
// stands, for the deployer's backup.done.
func (x *Executor) backup(ctx context.Context, s plan.Step, runEnv map[string]string) Result {
	spec := *s.Backup
	if spec.Dir == "" {
		spec.Dir = x.backupDir
	}
	list := runEnv["RUNBOOK_PHASE"]
	index, err := strconv.Atoi(runEnv["RUNBOOK_STEP"])
	if err != nil || list == "" {
		return Result{Err: fmt.Errorf("backup step: no step place in the run data (RUNBOOK_PHASE %q, RUNBOOK_STEP %q)", list, runEnv["RUNBOOK_STEP"])}
	}
	typ := backup.TypeDeploy
	if list == "rollback" {
		typ = backup.TypeRollback
	}
	r := &backup.Runner{BaseEnv: x.baseEnv(), TailBytes: x.tailBytes(), OnStart: x.OnStart}
	res, err := r.Add(ctx, spec, backup.Run{
		RunID: runEnv["RUNBOOK_RUN_ID"], ChangeID: runEnv["RUNBOOK_CHANGE_ID"],
		Operator: x.runInfo.Operator, Environment: x.runInfo.Environment,
		Secrets: x.planSecrets(),
	}, backup.Into{Dir: runEnv[BackupDirEnv], Since: x.runInfo.DeployStarted, Step: plan.StepPath(list, index), Type: typ})
	out := Result{OutputTail: backupText(res, x.tailBytes())}
	if err != nil {
		out.Err = err
		return out
	}
	out.Backup = res
	return out
}

// backupText is a backup step's output: one block per backup step (its
// outcome and message), the end of them when they are long, then what
// joined the run's backup.
func backupText(res *backup.Result, tail int) string {
	var b strings.Builder
	for _, st := range res.Steps {
		fmt.Fprintf(&b, "%s [%s] %s", st.Name, st.Kind, st.Status)
		if m := strings.TrimSpace(st.Message); m != "" {
			b.WriteString(": " + m)
		}
		b.WriteByte('\n')
	}
	steps := b.String()
	if len(steps) > tail {
		steps = "… " + steps[len(steps)-tail:]
	}
	files := "no file"
	if len(res.Added) > 0 {
		files = fmt.Sprintf("%d file(s): %s", len(res.Added), strings.Join(res.Added, ", "))
	}
	switch {
	case res.AlreadyTaken:
		return fmt.Sprintf("already taken by an earlier attempt (not taken again): %s in %s; %s lists %d file(s)", files, res.Dir, backup.MetadataFile, len(res.Metadata.Files))
	case res.MetadataPath != "":
		return steps + fmt.Sprintf("backed up %s into the run's backup %s; %s lists %d file(s)", files, res.Dir, backup.MetadataFile, len(res.Metadata.Files))
	case res.Dir != "":
		return steps + fmt.Sprintf("nothing joined the run's backup %s", res.Dir)
	}
	return strings.TrimSuffix(steps, "\n")
}
