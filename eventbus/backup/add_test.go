package backup_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus/backup"
)

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}

// checkDir asserts that dir holds exactly the files its metadata lists
// (each once, with the size and sha256 on disk) besides the metadata, and
// no staging directory.
func checkDir(t *testing.T, dir string) *backup.Metadata {
	t.Helper()
	md, err := backup.ReadMetadata(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Files) != len(md.FileDetails) {
		t.Fatalf("files %v, file_details %+v", md.Files, md.FileDetails)
	}
	seen := map[string]bool{}
	for i, d := range md.FileDetails {
		b, err := os.ReadFile(filepath.Join(dir, d.Name))
		if err != nil || d.Name != md.Files[i] || d.Size != int64(len(b)) || d.SHA256 != sum(b) || seen[d.Name] {
			t.Errorf("file_details[%d] = %+v; on disk %d bytes sha256 %s (%v), listed before: %v", i, d, len(b), sum(b), err, seen[d.Name])
		}
		seen[d.Name] = true
	}
	var onDisk []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			if !d.IsDir() && rel != backup.MetadataFile {
				onDisk = append(onDisk, filepath.ToSlash(rel))
			}
			if d.IsDir() && strings.HasPrefix(d.Name(), ".staging") {
				t.Errorf("staging directory %s left in the run's backup", rel)
			}
		}
		return nil
	})
	listed := slices.Sorted(slices.Values(md.Files))
	if slices.Sort(onDisk); !slices.Equal(onDisk, listed) {
		t.Errorf("on disk %v, the metadata lists %v", onDisk, listed)
	}
	return md
}

// A backup step of the deploy adds to the run's pre-flight backup: its
// files (a shell pipeline's gzip, a copied file) join the same directory
// and the same backup_metadata.json, after pre-flight's; the metadata
// lists each backup as a part. Taken again for the same step (a retry
// after a crash that followed the commit), nothing runs and nothing
// changes.
func TestAddToThePreflightBackup(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	nginx := filepath.Join(src, "nginx.conf")
	prod := filepath.Join(src, "production.json")
	write(t, nginx, "worker_processes 4;\n", 0o644)
	write(t, prod, `{"release": "v2.4.0"}`, 0o600)
	root := filepath.Join(t.TempDir(), "backups")
	run := backup.Run{RunID: "R-ADD", ChangeID: "CR-1", Operator: "alice"}
	pre, err := runner().Run(context.Background(), plan.Backup{Dir: root, Steps: []plan.BackupStep{{Files: []string{nginx}}}}, run)
	if err != nil {
		t.Fatal(err)
	}
	ran := filepath.Join(t.TempDir(), "ran")
	step := plan.Backup{Steps: []plan.BackupStep{
		{Name: "database", Command: &plan.Command{Shell: `echo data | gzip > "$BACKUP_DIR/out.gz"; echo "$RUNBOOK_BACKUP_DIR" > "$BACKUP_DIR/where.txt"; echo x >> ` + ran}},
		{Name: "config", Files: []string{prod}},
	}}
	later := &backup.Runner{Now: func() time.Time { return clock.Add(time.Minute) }}
	into := backup.Into{Dir: pre.Dir, Step: "deploy.steps[2]"}
	res, err := later.Add(context.Background(), step, run, into)
	if err != nil {
		t.Fatal(err)
	}
	if res.Dir != pre.Dir || res.AlreadyTaken || strings.Join(res.Added, ",") != "out.gz,where.txt,production.json" {
		t.Fatalf("result: dir %s (want %s), already taken %v, added %v", res.Dir, pre.Dir, res.AlreadyTaken, res.Added)
	}
	if got := gunzip(t, filepath.Join(pre.Dir, "out.gz")); got != "data\n" {
		t.Errorf("out.gz holds %q", got)
	}
	// BACKUP_DIR is where the step's files go; RUNBOOK_BACKUP_DIR is the
	// run's backup directory, as for every other step.
	if got, _ := os.ReadFile(filepath.Join(pre.Dir, "where.txt")); strings.TrimSpace(string(got)) != pre.Dir {
		t.Errorf("RUNBOOK_BACKUP_DIR = %q, want %s", got, pre.Dir)
	}
	md := checkDir(t, pre.Dir)
	if got := strings.Join(md.Files, ","); got != "nginx.conf,out.gz,where.txt,production.json" {
		t.Errorf("files %s", got)
	}
	if md.BackupType != "pre-flight" || md.Timestamp != "2025-09-23T02:01:00Z" || md.Operator != "alice" || md.RunID != "R-ADD" || len(md.Backups) != 2 {
		t.Fatalf("metadata %+v", md)
	}
	if p := md.Backups[0]; p.BackupType != "pre-flight" || p.Step != "" || p.Timestamp != "2025-09-23T02:00:00Z" || strings.Join(p.Files, ",") != "nginx.conf" {
		t.Errorf("first part %+v", p)
	}
	if p := md.Backups[1]; p.BackupType != "deployment" || p.Step != "deploy.steps[2]" || p.Timestamp != "2025-09-23T02:01:00Z" || strings.Join(p.Files, ",") != "out.gz,where.txt,production.json" {
		t.Errorf("second part %+v", p)
	}
	if res.MetadataPath != filepath.Join(pre.Dir, backup.MetadataFile) || !slices.Equal(res.Metadata.Files, md.Files) {
		t.Errorf("result metadata %s %v", res.MetadataPath, res.Metadata.Files)
	}

	before, _ := os.ReadFile(res.MetadataPath)
	again, err := later.Add(context.Background(), step, run, into)
	if err != nil || !again.AlreadyTaken || strings.Join(again.Added, ",") != "out.gz,where.txt,production.json" || !slices.Equal(again.Metadata.Files, md.Files) {
		t.Fatalf("again: %+v, %v", again, err)
	}
	if after, _ := os.ReadFile(res.MetadataPath); !bytes.Equal(before, after) {
		t.Errorf("the metadata changed when the step was taken again:\n%s\n%s", before, after)
	}
	if got, _ := os.ReadFile(ran); string(got) != "x\n" {
		t.Errorf("the step's command ran %d times, want once", strings.Count(string(got), "x"))
	}
}

// Without a pre-flight backup, a backup step makes the run's directory,
// named by the deploy's start, so every attempt finds the same one.
func TestAddMakesTheRunsDirectory(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "backups")
	since := time.Date(2025, 9, 23, 2, 5, 6, 0, time.UTC)
	res, err := runner().Add(context.Background(), plan.Backup{Dir: root, Steps: []plan.BackupStep{{Command: sh(`echo one > "$BACKUP_DIR/one.txt"`)}}},
		backup.Run{RunID: "R-NEW"}, backup.Into{Since: since, Step: "rollback_plan.rollback_steps[0]", Type: backup.TypeRollback})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "R-NEW-20250923_020506"); res.Dir != want {
		t.Errorf("dir %s, want %s", res.Dir, want)
	}
	md := checkDir(t, res.Dir)
	if md.BackupType != "rollback" || md.Operator != "system" || md.Environment != "production" || len(md.Backups) != 1 ||
		md.Backups[0].Step != "rollback_plan.rollback_steps[0]" || strings.Join(md.Files, ",") != "one.txt" {
		t.Errorf("metadata %+v", md)
	}
}

// What a crashed attempt left — a half-written file in the staging
// directory, a file renamed into the run's directory before the metadata
// listed it, the directory itself without metadata — never becomes part of
// the backup: the retry takes it whole, each file once.
func TestAddAfterACrash(t *testing.T) {
	t.Parallel()
	since := time.Date(2025, 9, 23, 2, 5, 6, 0, time.UTC)
	step := plan.Backup{Steps: []plan.BackupStep{{Name: "database", Command: sh(`echo data | gzip > "$BACKUP_DIR/out.gz"`)}}}
	t.Run("the step made the directory", func(t *testing.T) {
		t.Parallel()
		root := t.TempDir()
		into := backup.Into{Since: since, Step: "deploy.steps[1]"}
		dir := filepath.Join(root, "R-CRASH-20250923_020506")
		write(t, filepath.Join(dir, "out.gz"), "half", 0o600)
		write(t, filepath.Join(backup.StagingDir(dir, into.Step), "out.gz"), "hal", 0o600)
		write(t, filepath.Join(dir, "stray.txt"), "from the crashed attempt", 0o600)
		res, err := runner().Add(context.Background(), plan.Backup{Dir: root, Steps: step.Steps}, backup.Run{RunID: "R-CRASH"}, into)
		if err != nil || res.Dir != dir {
			t.Fatalf("dir %s: %v", res.Dir, err)
		}
		md := checkDir(t, dir)
		if strings.Join(md.Files, ",") != "out.gz" || gunzip(t, filepath.Join(dir, "out.gz")) != "data\n" {
			t.Errorf("files %v", md.Files)
		}
	})
	t.Run("pre-flight made the directory", func(t *testing.T) {
		t.Parallel()
		src := filepath.Join(t.TempDir(), "nginx.conf")
		write(t, src, "x", 0o644)
		pre, err := runner().Run(context.Background(), plan.Backup{Dir: t.TempDir(), Steps: []plan.BackupStep{{Files: []string{src}}}}, backup.Run{RunID: "R-CRASH2"})
		if err != nil {
			t.Fatal(err)
		}
		into := backup.Into{Dir: pre.Dir, Step: "deploy.steps[1]"}
		write(t, filepath.Join(pre.Dir, "out.gz"), "half", 0o600)
		write(t, filepath.Join(backup.StagingDir(pre.Dir, into.Step), "out.gz"), "hal", 0o600)
		if _, err := runner().Add(context.Background(), step, backup.Run{RunID: "R-CRASH2"}, into); err != nil {
			t.Fatal(err)
		}
		md := checkDir(t, pre.Dir)
		if strings.Join(md.Files, ",") != "nginx.conf,out.gz" || gunzip(t, filepath.Join(pre.Dir, "out.gz")) != "data\n" {
			t.Errorf("files %v", md.Files)
		}
	})
}

// A failing backup step commits nothing: the run's backup is as it was
// (its metadata byte for byte, no new file), and a retry takes it whole.
func TestAddFailsWithoutATrace(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "nginx.conf")
	write(t, src, "x", 0o644)
	run := backup.Run{RunID: "R-FAIL"}
	pre, err := runner().Run(context.Background(), plan.Backup{Dir: t.TempDir(), Steps: []plan.BackupStep{{Files: []string{src}}}}, run)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(pre.MetadataPath)
	ok := filepath.Join(t.TempDir(), "ok")
	step := plan.Backup{Steps: []plan.BackupStep{
		{Name: "first", Command: sh(`echo a > "$BACKUP_DIR/a.txt"`)},
		{Name: "database", Command: sh(`echo partial > "$BACKUP_DIR/db.gz"; test -f ` + ok + ` || { echo "pg_dump: connection refused" >&2; exit 2; }`)},
	}}
	into := backup.Into{Dir: pre.Dir, Step: "deploy.steps[3]"}
	res, err := runner().Add(context.Background(), step, run, into)
	var se *backup.StepError
	if !errors.As(err, &se) || se.Index != 1 || !strings.Contains(err.Error(), "backup step 2 (database) failed") || !strings.Contains(res.Steps[1].Message, "connection refused") {
		t.Fatalf("err = %v; steps %+v", err, res.Steps)
	}
	if after, _ := os.ReadFile(pre.MetadataPath); !bytes.Equal(before, after) {
		t.Errorf("a failed step changed the metadata")
	}
	for _, n := range []string{"a.txt", "db.gz"} {
		if _, err := os.Stat(filepath.Join(pre.Dir, n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s of the failed step is in the run's backup", n)
		}
	}
	checkDir(t, pre.Dir) // and no staging directory left
	write(t, ok, "", 0o644)
	if _, err := runner().Add(context.Background(), step, run, into); err != nil {
		t.Fatal(err)
	}
	if md := checkDir(t, pre.Dir); strings.Join(md.Files, ",") != "nginx.conf,a.txt,db.gz" {
		t.Errorf("files %v", md.Files)
	}
}

// A file whose name the run's backup already holds fails the step, and
// the earlier file stays as it was.
func TestAddRefusesATakenName(t *testing.T) {
	t.Parallel()
	src := filepath.Join(t.TempDir(), "nginx.conf")
	write(t, src, "original", 0o644)
	pre, err := runner().Run(context.Background(), plan.Backup{Dir: t.TempDir(), Steps: []plan.BackupStep{{Files: []string{src}}}}, backup.Run{RunID: "R-NAME"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = runner().Add(context.Background(), plan.Backup{Steps: []plan.BackupStep{{Command: sh(`echo other > "$BACKUP_DIR/nginx.conf"`)}}},
		backup.Run{RunID: "R-NAME"}, backup.Into{Dir: pre.Dir, Step: "deploy.steps[0]"})
	if err == nil || !strings.Contains(err.Error(), "nginx.conf is already in the run's backup") {
		t.Fatalf("err = %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(pre.Dir, "nginx.conf")); string(got) != "original" {
		t.Errorf("nginx.conf = %q", got)
	}
	checkDir(t, pre.Dir)
}

// The seed's `pg_dump | gzip > file` as a shell script: the file is made,
// and a secret the script prints is redacted from the step's message.
func TestAddShellPipelineRedacted(t *testing.T) {
	t.Parallel()
	const secret = "pg-Dump-Passw0rd-91"
	r := &backup.Runner{Now: func() time.Time { return clock }, BaseEnv: []string{"PATH=" + os.Getenv("PATH"), "DB_PASSWORD=" + secret}}
	res, err := r.Add(context.Background(), plan.Backup{Dir: t.TempDir(), Steps: []plan.BackupStep{
		{Name: "database", Command: &plan.Command{Shell: `echo data | gzip > "$BACKUP_DIR/out.gz"; echo "dumped with $DB_PASSWORD"`}},
	}}, backup.Run{RunID: "R-SHELL", Secrets: map[string]string{"DB_PASSWORD": secret}}, backup.Into{Step: "deploy.steps[0]"})
	if err != nil {
		t.Fatal(err)
	}
	if got := gunzip(t, filepath.Join(res.Dir, "out.gz")); got != "data\n" {
		t.Errorf("out.gz holds %q", got)
	}
	if msg := res.Steps[0].Message; strings.Contains(msg, secret) || !strings.Contains(msg, "dumped with [REDACTED:DB_PASSWORD]") {
		t.Errorf("message %q", msg)
	}
}
