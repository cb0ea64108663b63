// Package backup is the seed's preflight-backup.sh, for the two services
// that take a run's backups: pre-flight (Runner.Run, the last part of
// pre-flight) makes a new directory for the run, runs the plan's backup
// steps into it in order (commands with BACKUP_DIR in their environment,
// files copied by base name) and writes backup_metadata.json as the seed
// writes it, plus each file's size and sha256. The deployer (Runner.Add, a
// deploy, finally or rollback step of kind backup: the seed's
// deployment-script.sh backs up after blocking traffic) adds to that same
// directory, or makes it when pre-flight made none (add.go).
//
// Commands run through procio.Run, from argv or the plan's own shell
// script, in their own process group, with secrets redacted. A listed file
// that does not exist is a warning (the seed's "FILE NOT FOUND"), not a
// failure; a command that fails, a copy that fails or metadata that cannot
// be written fails the backup (the pre-flight, or the step).
package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus/procio"
)

// Formats the seed fixes.
const (
	// MetadataFile is written last into every backup directory.
	MetadataFile = plan.BackupMetadataFile
	// Type is backup_metadata.json's backup_type of pre-flight's backup.
	Type = "pre-flight"
	// TypeDeploy and TypeRollback are the backup_type of a backup step of
	// the deploy (steps, finally) and of the rollback.
	TypeDeploy   = "deployment"
	TypeRollback = "rollback"
	// TimestampLayout is backup_metadata.json's timestamp (UTC): the seed's
	// `date -u +%Y-%m-%dT%H:%M:%SZ`.
	TimestampLayout = "2006-01-02T15:04:05Z"
	// DirLayout is the directory's time part: the seed's
	// `date +%Y%m%d_%H%M%S` (in UTC here).
	DirLayout = "20060102_150405"
	// DefaultOperator is the operator when the change has no actor.
	DefaultOperator = "system"
	// DefaultEnvironment is the seed's ${ENVIRONMENT:-production}.
	DefaultEnvironment = "production"
)

// Metadata is backup_metadata.json. The first five keys are the seed's, in
// its order; run_id, change_id and file_details (each file's size and
// sha256) are runbook's additions, after them, and backups once a backup
// step has added to the directory.
type Metadata struct {
	// Timestamp is when the metadata was last written: when the last
	// backup into the directory completed.
	Timestamp   string `json:"timestamp"`
	Operator    string `json:"operator"`
	Environment string `json:"environment"`
	// BackupType is the type of the directory's first backup.
	BackupType string `json:"backup_type"`
	// Files are every file of the directory, in the order they came.
	Files       []string     `json:"files"`
	RunID       string       `json:"run_id"`
	ChangeID    string       `json:"change_id"`
	FileDetails []FileDetail `json:"file_details"`
	// Backups are the backups taken into the directory, in order, once a
	// backup step added to it (absent for pre-flight's alone).
	Backups []Part `json:"backups,omitempty"`
}

// Part is one backup taken into a run's directory: pre-flight's, or a
// backup step's (Step names it in the plan, e.g. "deploy.steps[2]").
type Part struct {
	BackupType string   `json:"backup_type"`
	Step       string   `json:"step,omitempty"`
	Timestamp  string   `json:"timestamp"`
	Files      []string `json:"files"`
}

// taken reports whether the backup step at step is in the metadata.
func (m *Metadata) taken(step string) bool {
	for _, p := range m.Backups {
		if p.Step == step {
			return true
		}
	}
	return false
}

// FileDetail is one file of the backup.
type FileDetail struct {
	Name   string `json:"name"` // relative to the backup directory, / separated
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // hex
}

// Marshal is the metadata as the seed's heredoc writes it: two-space
// indent, one key per line, a newline at the end.
func (m Metadata) Marshal() ([]byte, error) {
	if m.Files == nil {
		m.Files = []string{}
	}
	if m.FileDetails == nil {
		m.FileDetails = []FileDetail{}
	}
	m.Backups = slices.Clone(m.Backups)
	for i := range m.Backups {
		if m.Backups[i].Files == nil {
			m.Backups[i].Files = []string{}
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Run is the run a backup is for.
type Run struct {
	RunID    string
	ChangeID string
	// Operator goes into the metadata (default "system").
	Operator string
	// Environment goes into the metadata (default "production").
	Environment string
	// Secrets are the values of the variables the plan names (name →
	// value): redacted from the commands' output and errors as from deploy
	// steps' (procio.Redactor), with the secret-looking variables of their
	// environment.
	Secrets map[string]string
}

// Status of one step.
type Status int

const (
	Pass Status = iota
	Warn        // done, with warnings (a listed file not found)
	Fail
)

func (s Status) String() string {
	return [...]string{"PASS", "WARN", "FAIL"}[s]
}

// StepResult is what one backup step did.
type StepResult struct {
	Index    int
	Name     string // the step's label
	Kind     string // command or files
	Status   Status
	Message  string   // what happened, one line per file or the command's outcome
	Files    []string // names it added to the directory
	Warnings []string // e.g. "/app/.env: FILE NOT FOUND"
	Duration time.Duration
}

// Result is a finished (or failed) backup.
type Result struct {
	Dir          string // absolute: the run's backup directory
	MetadataPath string // absolute, "" until written
	// Metadata is the directory's backup_metadata.json as written (for
	// Add: every file of the directory, not only the step's).
	Metadata Metadata
	Steps    []StepResult
	// Added are the files this backup added, in order.
	Added []string
	// AlreadyTaken: Add found the step's backup in the metadata (an
	// earlier attempt took it) and ran nothing.
	AlreadyTaken bool
}

// StepError is a failed backup step; Index is -1 for the metadata.
type StepError struct {
	Index int
	Name  string
	Err   error
}

func (e *StepError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("backup %s: %v", e.Name, e.Err)
	}
	return fmt.Sprintf("backup step %d (%s) failed: %v", e.Index+1, e.Name, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// Runner runs backups.
type Runner struct {
	// BaseEnv is the environment every command starts from (default
	// os.Environ()).
	BaseEnv []string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// TailBytes of a command's output are kept in its result (default 2 KiB).
	TailBytes int
	// OnStart, when set, is told the pid (= process group id) of each
	// command as it starts (tests watch the group with it).
	OnStart func(pid int)
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (run Run) withDefaults() Run {
	if run.Operator == "" {
		run.Operator = DefaultOperator
	}
	if run.Environment == "" {
		run.Environment = DefaultEnvironment
	}
	return run
}

// Run makes a new directory <b.Dir>/<run id>-YYYYMMDD_HHMMSS, runs b's steps
// into it in order and writes backup_metadata.json. On error the result
// holds what was done so far and the error is a *StepError naming the step
// (or ctx's error when ctx ended).
func (r *Runner) Run(ctx context.Context, b plan.Backup, run Run) (*Result, error) {
	run = run.withDefaults()
	res := &Result{}
	dir, err := r.makeDir(b.EffectiveDir(), run.RunID)
	if err != nil {
		return res, &StepError{Index: -1, Name: "directory", Err: err}
	}
	res.Dir = dir
	order, err := r.steps(ctx, b, run, dir, dir, res)
	if err != nil {
		return res, err
	}
	md := Metadata{
		Operator: run.Operator, Environment: run.Environment, BackupType: Type,
		RunID: run.RunID, ChangeID: run.ChangeID,
		Files: order,
	}
	details, err := details(dir, order)
	if err != nil {
		return res, err
	}
	md.FileDetails = details
	md.Timestamp = r.now().UTC().Format(TimestampLayout)
	res.Metadata, res.Added = md, order
	path, err := writeMetadata(dir, md)
	if err != nil {
		return res, &StepError{Index: -1, Name: "metadata (" + MetadataFile + ")", Err: err}
	}
	res.MetadataPath = path
	return res, nil
}

// steps runs b's steps in order into dir (the commands' BACKUP_DIR; their
// RUNBOOK_BACKUP_DIR is runDir, the run's backup directory), appending
// their results to res, and returns the names of the files they left in
// dir in the order they came.
func (r *Runner) steps(ctx context.Context, b plan.Backup, run Run, dir, runDir string, res *Result) ([]string, error) {
	seen := map[string]bool{}
	var order []string
	for i, s := range b.Steps {
		sr := StepResult{Index: i, Name: s.Label(i), Kind: s.Kind()}
		t0 := time.Now()
		sctx, cancel := context.WithTimeout(ctx, s.EffectiveTimeout())
		var err error
		switch {
		case s.Command != nil:
			err = r.command(sctx, dir, runDir, i, s, run, &sr)
		case len(s.Files) > 0:
			err = copyFiles(sctx, dir, s.Files, &sr)
		default:
			err = errors.New("the step has nothing to do (neither command nor files)")
		}
		if err != nil && errors.Is(sctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("timed out after %s: %w", s.EffectiveTimeout(), err)
		}
		cancel()
		sr.Duration = time.Since(t0)
		// What the step left in the directory, in the order it came: the
		// files it named (files steps in list order, a command's stdout),
		// then any other new file by name.
		before := len(order)
		for _, n := range sr.Files {
			if !seen[n] {
				seen[n] = true
				order = append(order, n)
			}
		}
		added, serr := newFiles(dir, seen)
		if err == nil && serr != nil {
			err = serr
		}
		for _, n := range added {
			seen[n] = true
			order = append(order, n)
		}
		sr.Files = slices.Clone(order[before:])
		switch {
		case err != nil:
			sr.Status = Fail
			if sr.Message == "" {
				sr.Message = err.Error()
			} else {
				sr.Message = err.Error() + "\n" + sr.Message
			}
		case len(sr.Warnings) > 0:
			sr.Status = Warn
		}
		res.Steps = append(res.Steps, sr)
		if err != nil {
			if ctx.Err() != nil {
				return order, ctx.Err()
			}
			return order, &StepError{Index: i, Name: sr.Name, Err: err}
		}
	}
	return order, nil
}

// details measures the named files of dir as they are on disk.
func details(dir string, names []string) ([]FileDetail, error) {
	var out []FileDetail
	for _, n := range names {
		fd, err := detail(dir, n)
		if err != nil {
			return out, &StepError{Index: -1, Name: "verification", Err: err}
		}
		out = append(out, fd)
	}
	return out, nil
}

// makeDir creates the run's new directory under root. The name is unique
// per run and second; should it exist (a retry within the same second), a
// -2, -3 ... suffix makes a fresh one: a backup never writes into an old
// directory.
func (r *Runner) makeDir(root, runID string) (string, error) {
	if runID == "" {
		return "", errors.New("no run id")
	}
	abs, err := makeRoot(root)
	if err != nil {
		return "", err
	}
	base := filepath.Join(abs, runID+"-"+r.now().UTC().Format(DirLayout))
	dir := base
	for n := 2; ; n++ {
		err := os.Mkdir(dir, 0o700)
		if err == nil {
			return dir, nil
		}
		if !errors.Is(err, fs.ErrExist) || n > 100 {
			return "", fmt.Errorf("create %s: %w", dir, err)
		}
		dir = fmt.Sprintf("%s-%d", base, n)
	}
}

// command runs one command step with BACKUP_DIR set to dir (where its
// files go) and RUNBOOK_BACKUP_DIR to runDir (the run's backup directory);
// its stdout goes to Stdout (a file in dir) when the plan says so.
func (r *Runner) command(ctx context.Context, dir, runDir string, index int, s plan.BackupStep, run Run, sr *StepResult) error {
	c := s.Command
	base := r.BaseEnv
	if base == nil {
		base = os.Environ()
	}
	env := slices.Clone(base)
	for k, v := range c.Env {
		env = append(env, k+"="+v)
	}
	// Run data last: the plan's env cannot override it.
	env = append(env,
		"BACKUP_DIR="+dir,
		"RUNBOOK_BACKUP_DIR="+runDir,
		"RUNBOOK_RUN_ID="+run.RunID,
		"RUNBOOK_CHANGE_ID="+run.ChangeID,
		"RUNBOOK_PHASE=backup",
		fmt.Sprintf("RUNBOOK_STEP=%d", index),
		"RUNBOOK_STEP_NAME="+s.Label(index),
	)
	sec := procio.CommandSecrets(maps.Clone(run.Secrets), c.Env, base)
	pc := procio.Command{Argv: c.Argv, Shell: c.Shell, Dir: c.Dir, Env: env, TailBytes: r.tailBytes(),
		OnStart: r.OnStart, Secrets: procio.NewRedactor(sec)}
	var stdout *os.File
	if s.Stdout != "" {
		f, err := os.OpenFile(filepath.Join(dir, s.Stdout), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("stdout file: %w", err)
		}
		stdout = f
		pc.StdoutTo = f
		sr.Files = append(sr.Files, s.Stdout)
	}
	out := procio.Run(ctx, pc)
	if stdout != nil {
		if serr := syncClose(stdout); serr != nil && out.Err == nil {
			return fmt.Errorf("stdout file %s: %w", s.Stdout, serr)
		}
	}
	sr.Message = out.Output
	if out.Err != nil {
		return out.Err
	}
	if out.ExitCode != c.ExpectExit {
		return pc.Secrets.RedactError(fmt.Errorf("%s exited %d, want %d", pc.Text(), out.ExitCode, c.ExpectExit))
	}
	if sr.Message == "" {
		sr.Message = pc.Secrets.Redact(fmt.Sprintf("%s: exit %d", pc.Text(), out.ExitCode))
	}
	return nil
}

func (r *Runner) tailBytes() int {
	if r.TailBytes > 0 {
		return r.TailBytes
	}
	return 2048
}

// copyFiles is the seed's loop: each regular file is copied into dir by its
// base name; one that is not there is a warning, and the loop goes on.
func copyFiles(ctx context.Context, dir string, files []string, sr *StepResult) error {
	var lines []string
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := os.Stat(f)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			w := f + ": FILE NOT FOUND"
			sr.Warnings = append(sr.Warnings, w)
			lines = append(lines, w)
			continue
		case err != nil:
			sr.Message = strings.Join(lines, "\n")
			return fmt.Errorf("%s: %w", f, err)
		case !fi.Mode().IsRegular():
			// The seed's [ -f "$file" ] is false for a directory too.
			w := fmt.Sprintf("%s: FILE NOT FOUND (not a regular file: %s)", f, fi.Mode().Type())
			sr.Warnings = append(sr.Warnings, w)
			lines = append(lines, w)
			continue
		}
		name := plan.BackupName(f)
		n, err := copyFile(ctx, f, filepath.Join(dir, name), fi.Mode().Perm())
		if err != nil {
			sr.Message = strings.Join(lines, "\n")
			return fmt.Errorf("copy %s: %w", f, err)
		}
		sr.Files = append(sr.Files, name)
		lines = append(lines, fmt.Sprintf("%s: BACKED UP as %s (%d bytes)", f, name, n))
	}
	sr.Message = strings.Join(lines, "\n")
	return nil
}

// copyFile copies src to dst (which must not exist) with mode perm, and
// syncs it.
func copyFile(ctx context.Context, src, dst string, perm fs.FileMode) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, procio.ContextReader{Ctx: ctx, R: in})
	if err != nil {
		out.Close()
		return n, err
	}
	return n, syncClose(out)
}

func syncClose(f *os.File) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// newFiles lists the regular files under dir not in seen, sorted by name.
func newFiles(dir string, seen map[string]bool) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !seen[rel] && rel != MetadataFile {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	slices.Sort(out)
	return out, nil
}

// detail measures one file of the backup as it is on disk.
func detail(dir, name string) (FileDetail, error) {
	f, err := os.Open(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		return FileDetail{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return FileDetail{}, fmt.Errorf("checksum %s: %w", name, err)
	}
	return FileDetail{Name: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// writeMetadata writes backup_metadata.json atomically (temp file, sync,
// rename, sync the directory): its presence means the backup is complete.
func writeMetadata(dir string, md Metadata) (string, error) {
	b, err := md.Marshal()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, MetadataFile)
	tmp, err := os.CreateTemp(dir, "."+MetadataFile+".*")
	if err != nil {
		return "", err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", err
	}
	if err := syncClose(tmp); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	syncDir(dir)
	return path, nil
}

// syncDir makes the renames in dir durable (best effort).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// ReadMetadata reads dir's backup_metadata.json.
func ReadMetadata(dir string) (*Metadata, error) {
	b, err := os.ReadFile(filepath.Join(dir, MetadataFile))
	if err != nil {
		return nil, err
	}
	var md Metadata
	if err := json.Unmarshal(b, &md); err != nil {
		return nil, fmt.Errorf("%s: %w", MetadataFile, err)
	}
	return &md, nil
}

// makeRoot makes the directory every run's backup directory goes under
// (the plan's backup dir) and returns its absolute path.
func makeRoot(root string) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("backup dir %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return "", fmt.Errorf("create backup dir %s: %w", abs, err)
	}
	return abs, nil
}
