package backup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
)

// Into says where a backup step's backup goes.
type Into struct {
	// Dir is the run's backup directory (its latest backup.done); "" when
	// the run has none yet: Add makes <b.Dir>/<run id>-YYYYMMDD_HHMMSS,
	// named by Since.
	Dir string
	// Since is when the run's deploy started (deploy.started's time): the
	// same on every attempt, so a retried step finds the directory an
	// attempt cut short made (default: now).
	Since time.Time
	// Step is the step's place in the plan, e.g. "deploy.steps[2]"
	// (plan.StepPath): recorded in the metadata's backups, where a retry
	// finds that the step's backup is taken.
	Step string
	// Type is the backup's backup_type: TypeDeploy or TypeRollback.
	Type string
}

// Add takes backup b into the run's backup directory (into.Dir, or one it
// makes) for the backup step into.Step, so that restore steps find its
// files there, listed in backup_metadata.json with the earlier ones.
//
// It is safe to run again after a crash cut it short, at any point, and
// it never leaves half a backup in the run's directory: b's steps run in a
// fresh staging directory inside it (their BACKUP_DIR; RUNBOOK_BACKUP_DIR
// is the run's directory), which a retry empties first. Once they all
// passed, their files are renamed into the run's directory and the
// metadata is rewritten (temp file + rename) with them and a Part for the
// step: that write is the commit. A step already in the metadata (an
// earlier attempt committed, and crashed before the deployer recorded the
// step's success) is not taken again: the result has AlreadyTaken.
//
// A file whose name is already in the run's backup fails the step: the
// run's backups share one directory (validate refuses the names it can
// know). On error the result holds what was done so far and the error is
// a *StepError (or ctx's error when ctx ended); nothing was committed.
func (r *Runner) Add(ctx context.Context, b plan.Backup, run Run, into Into) (*Result, error) {
	run = run.withDefaults()
	res := &Result{}
	if into.Step == "" {
		return res, &StepError{Index: -1, Name: "step", Err: errors.New("no step: Into.Step names the backup step")}
	}
	if into.Type == "" {
		into.Type = TypeDeploy
	}
	dir := into.Dir
	if dir == "" {
		since := into.Since
		if since.IsZero() {
			since = r.now()
		}
		d, err := runDir(b.EffectiveDir(), run.RunID, since)
		if err != nil {
			return res, &StepError{Index: -1, Name: "directory", Err: err}
		}
		dir = d
	}
	res.Dir = dir
	md, err := ReadMetadata(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist) && into.Dir == "":
		// A directory this step makes, now or in an attempt cut short
		// before its commit: whatever that attempt left is not a backup.
		if err := emptyDir(dir); err != nil {
			return res, &StepError{Index: -1, Name: "directory", Err: err}
		}
		md = nil
	case err != nil:
		return res, &StepError{Index: -1, Name: "metadata (" + MetadataFile + ")", Err: fmt.Errorf("the run's backup %s: %w", dir, err)}
	}
	stage := StagingDir(dir, into.Step)
	if md != nil && md.taken(into.Step) {
		_ = os.RemoveAll(stage) // left by a crash after the commit
		res.Metadata, res.MetadataPath, res.AlreadyTaken = *md, filepath.Join(dir, MetadataFile), true
		for _, p := range md.Backups {
			if p.Step == into.Step {
				res.Added = slices.Clone(p.Files)
			}
		}
		return res, nil
	}
	if err := os.RemoveAll(stage); err != nil {
		return res, &StepError{Index: -1, Name: "directory", Err: fmt.Errorf("clear %s: %w", stage, err)}
	}
	if err := os.Mkdir(stage, 0o700); err != nil {
		return res, &StepError{Index: -1, Name: "directory", Err: err}
	}
	// Whatever happens now, the staging directory goes (after the commit
	// it is empty); only a crash leaves it, for the retry to clear.
	defer os.RemoveAll(stage)
	order, err := r.steps(ctx, b, run, stage, dir, res)
	if err != nil {
		return res, err
	}
	if md != nil {
		for _, n := range order {
			if slices.Contains(md.Files, n) {
				return res, &StepError{Index: -1, Name: "files", Err: fmt.Errorf("%s is already in the run's backup %s (the run's backups share one directory): save it under another name", n, dir)}
			}
		}
	}
	added, err := details(stage, order)
	if err != nil {
		return res, err
	}
	// The commit: the files into the run's directory, then the metadata
	// that lists them. A crash between the two leaves files the metadata
	// does not list, which the retry's renames replace.
	for _, n := range order {
		to := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			return res, &StepError{Index: -1, Name: "files", Err: err}
		}
		if err := os.Rename(filepath.Join(stage, filepath.FromSlash(n)), to); err != nil {
			return res, &StepError{Index: -1, Name: "files", Err: err}
		}
	}
	syncDir(dir)
	now := r.now().UTC().Format(TimestampLayout)
	next := Metadata{Operator: run.Operator, Environment: run.Environment, BackupType: into.Type, RunID: run.RunID, ChangeID: run.ChangeID}
	if md != nil {
		next = *md
		next.Files = slices.Clone(md.Files)
		next.FileDetails = slices.Clone(md.FileDetails)
		next.Backups = slices.Clone(md.Backups)
		if len(next.Backups) == 0 {
			// The directory's first backup (pre-flight's), as a part.
			next.Backups = []Part{{BackupType: md.BackupType, Timestamp: md.Timestamp, Files: slices.Clone(md.Files)}}
		}
	}
	next.Timestamp = now
	next.Files = append(next.Files, order...)
	next.FileDetails = append(next.FileDetails, added...)
	next.Backups = append(next.Backups, Part{BackupType: into.Type, Step: into.Step, Timestamp: now, Files: slices.Clone(order)})
	res.Metadata, res.Added = next, order
	path, err := writeMetadata(dir, next)
	if err != nil {
		return res, &StepError{Index: -1, Name: "metadata (" + MetadataFile + ")", Err: err}
	}
	res.MetadataPath = path
	return res, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// StagingDir is where Add takes step's backup before it joins the run's
// backup directory dir: a hidden directory in it, the same on every
// attempt (so a retry finds and clears what a crashed one left).
func StagingDir(dir, step string) string {
	return filepath.Join(dir, ".staging-"+strings.Trim(unsafeName.ReplaceAllString(step, "_"), "_"))
}

// runDir is the run's backup directory <root>/<run id>-<since>, made if
// need be; an existing one is this run's (the name is its own), made by an
// earlier attempt.
func runDir(root, runID string, since time.Time) (string, error) {
	if runID == "" {
		return "", errors.New("no run id")
	}
	abs, err := makeRoot(root)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(abs, runID+"-"+since.UTC().Format(DirLayout))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory (%v)", dir, err)
	}
	return dir, nil
}

// emptyDir removes everything in dir.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
