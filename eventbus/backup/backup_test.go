package backup_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus/backup"
)

var clock = time.Date(2025, 9, 23, 2, 0, 0, 0, time.UTC)

func runner() *backup.Runner {
	return &backup.Runner{Now: func() time.Time { return clock }}
}

func write(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
}

func sh(script string) *plan.Command {
	return &plan.Command{Argv: []string{"sh", "-c", script}}
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// The seed's backup: a "database dump" by a command, config files copied
// (one of them missing: a warning, not a failure), state captured from a
// command's stdout, then backup_metadata.json.
func TestBackupLikeTheSeed(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	nginx := filepath.Join(src, "etc", "nginx", "nginx.conf")
	prod := filepath.Join(src, "app", "config", "production.json")
	write(t, nginx, "worker_processes 4;\n", 0o644)
	write(t, prod, `{"db": "kis_db"}`, 0o600)
	missing := filepath.Join(src, "app", ".env")
	root := filepath.Join(t.TempDir(), "backups")

	b := plan.Backup{Dir: root, Steps: []plan.BackupStep{
		{Name: "database", Command: sh(`printf 'dump of kis_db\n' | gzip > "$BACKUP_DIR/database.sql.gz"`)},
		{Name: "configuration", Files: []string{nginx, prod, missing}},
		{Name: "application state", Command: &plan.Command{Argv: []string{"echo", "NAMES STATUS PORTS"}}, Stdout: "docker_state.txt"},
	}}
	res, err := runner().Run(context.Background(), b, backup.Run{RunID: "DEPLOY-20250923-020000", ChangeID: "CR-2025-001", Operator: "alice", Environment: "staging"})
	if err != nil {
		t.Fatal(err)
	}

	// A new directory for the run, named by run id and time.
	if want := filepath.Join(root, "DEPLOY-20250923-020000-20250923_020000"); res.Dir != want {
		t.Errorf("dir = %s, want %s", res.Dir, want)
	}
	if fi, err := os.Stat(res.Dir); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir: %v %v", fi, err)
	}

	// Files copied byte for byte, mode kept.
	for _, f := range []string{nginx, prod} {
		want, _ := os.ReadFile(f)
		got, err := os.ReadFile(filepath.Join(res.Dir, filepath.Base(f)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("copy of %s = %q, %v", f, got, err)
		}
	}
	if fi, _ := os.Stat(filepath.Join(res.Dir, "production.json")); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("production.json mode = %v, want 0600 like the original", fi)
	}
	if got, _ := os.ReadFile(filepath.Join(res.Dir, "docker_state.txt")); string(got) != "NAMES STATUS PORTS\n" {
		t.Errorf("docker_state.txt = %q", got)
	}

	// The missing file is a warning; the step still counts.
	if len(res.Steps) != 3 {
		t.Fatalf("steps = %+v", res.Steps)
	}
	cfg := res.Steps[1]
	if cfg.Status != backup.Warn || len(cfg.Warnings) != 1 || cfg.Warnings[0] != missing+": FILE NOT FOUND" || !strings.Contains(cfg.Message, nginx+": BACKED UP as nginx.conf") {
		t.Errorf("configuration step = %+v", cfg)
	}
	if res.Steps[0].Status != backup.Pass || strings.Join(res.Steps[0].Files, ",") != "database.sql.gz" {
		t.Errorf("database step = %+v", res.Steps[0])
	}

	// backup_metadata.json: the seed's keys in the seed's order, then ours.
	raw, err := os.ReadFile(res.MetadataPath)
	if err != nil || res.MetadataPath != filepath.Join(res.Dir, "backup_metadata.json") {
		t.Fatalf("metadata %s: %v", res.MetadataPath, err)
	}
	if keys := topKeys(t, raw); strings.Join(keys, ",") != "timestamp,operator,environment,backup_type,files,run_id,change_id,file_details" {
		t.Errorf("metadata keys = %v", keys)
	}
	var md backup.Metadata
	if err := json.Unmarshal(raw, &md); err != nil {
		t.Fatal(err)
	}
	if md.Timestamp != "2025-09-23T02:00:00Z" || md.Operator != "alice" || md.Environment != "staging" || md.BackupType != "pre-flight" ||
		md.RunID != "DEPLOY-20250923-020000" || md.ChangeID != "CR-2025-001" {
		t.Errorf("metadata = %+v", md)
	}
	if got := strings.Join(md.Files, ","); got != "database.sql.gz,nginx.conf,production.json,docker_state.txt" {
		t.Errorf("files = %s", got)
	}
	// Each checksum recomputed from the file on disk.
	if len(md.FileDetails) != len(md.Files) {
		t.Fatalf("file_details = %+v", md.FileDetails)
	}
	for i, d := range md.FileDetails {
		b, err := os.ReadFile(filepath.Join(res.Dir, d.Name))
		if err != nil || d.Name != md.Files[i] || d.Size != int64(len(b)) || d.SHA256 != sum(b) {
			t.Errorf("file_details[%d] = %+v; on disk %d bytes sha256 %s (%v)", i, d, len(b), sum(b), err)
		}
	}
	if entries, _ := os.ReadDir(res.Dir); len(entries) != 5 {
		t.Errorf("backup dir holds %d entries, want 4 files + metadata (no temp files)", len(entries))
	}
}

// The metadata is byte for byte the shape of the seed's heredoc.
func TestMetadataBytes(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	src := filepath.Join(t.TempDir(), "nginx.conf")
	write(t, src, "x", 0o644)
	res, err := runner().Run(context.Background(), plan.Backup{Dir: root, Steps: []plan.BackupStep{{Files: []string{src}}}}, backup.Run{RunID: "R1"})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(res.MetadataPath)
	want := `{
  "timestamp": "2025-09-23T02:00:00Z",
  "operator": "system",
  "environment": "production",
  "backup_type": "pre-flight",
  "files": [
    "nginx.conf"
  ],
  "run_id": "R1",
  "change_id": "",
  "file_details": [
    {
      "name": "nginx.conf",
      "size": 1,
      "sha256": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
    }
  ]
}
`
	if string(got) != want {
		t.Errorf("metadata:\n%s\nwant:\n%s", got, want)
	}
	md, err := backup.ReadMetadata(res.Dir)
	if err != nil || md.FileDetails[0].SHA256 != sum([]byte("x")) {
		t.Errorf("ReadMetadata = %+v, %v", md, err)
	}
}

// Commands see BACKUP_DIR (and the run's RUNBOOK_* variables); the plan's
// env cannot override them.
func TestCommandEnvironment(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	cmd := sh(`printf '%s|%s|%s|%s|%s' "$BACKUP_DIR" "$RUNBOOK_RUN_ID" "$RUNBOOK_CHANGE_ID" "$RUNBOOK_STEP_NAME" "$FROM_PLAN" > "$BACKUP_DIR/env.txt"`)
	cmd.Env = map[string]string{"FROM_PLAN": "yes", "BACKUP_DIR": "/elsewhere"}
	res, err := runner().Run(context.Background(), plan.Backup{Dir: root, Steps: []plan.BackupStep{{Name: "env", Command: cmd}}},
		backup.Run{RunID: "R2", ChangeID: "CR-9"})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(res.Dir, "env.txt"))
	if want := res.Dir + "|R2|CR-9|env|yes"; string(got) != want {
		t.Errorf("command saw %q, want %q", got, want)
	}
	if !filepath.IsAbs(res.Dir) {
		t.Errorf("BACKUP_DIR %s is not absolute", res.Dir)
	}
}

// A failing command fails the backup, naming the step; nothing after it
// runs and no metadata is written.
func TestFailingCommand(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	after := filepath.Join(t.TempDir(), "after")
	write(t, after, "a", 0o644)
	res, err := runner().Run(context.Background(), plan.Backup{Dir: root, Steps: []plan.BackupStep{
		{Name: "ok", Command: sh(`echo fine > "$BACKUP_DIR/ok.txt"`)},
		{Name: "database", Command: sh(`echo "pg_dump: connection refused" >&2; exit 3`)},
		{Name: "config", Files: []string{after}},
	}}, backup.Run{RunID: "R3"})
	var se *backup.StepError
	if !errors.As(err, &se) || se.Index != 1 || se.Name != "database" {
		t.Fatalf("err = %v", err)
	}
	if !strings.Contains(err.Error(), "backup step 2 (database) failed") || !strings.Contains(err.Error(), "exited 3, want 0") {
		t.Errorf("err = %v", err)
	}
	if len(res.Steps) != 2 || res.Steps[1].Status != backup.Fail || !strings.Contains(res.Steps[1].Message, "connection refused") {
		t.Errorf("steps = %+v", res.Steps)
	}
	if _, err := os.Stat(filepath.Join(res.Dir, "backup_metadata.json")); !errors.Is(err, os.ErrNotExist) || res.MetadataPath != "" {
		t.Errorf("metadata written despite the failure: %v", err)
	}
	if _, err := os.Stat(filepath.Join(res.Dir, "after")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a step after the failed one ran")
	}
}

// expect_exit is the exit code that means success; a timeout fails.
func TestExitCodeAndTimeout(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	c := sh("exit 1")
	c.ExpectExit = 1
	if _, err := runner().Run(context.Background(), plan.Backup{Dir: root, Steps: []plan.BackupStep{{Command: c}}}, backup.Run{RunID: "R4"}); err != nil {
		t.Errorf("expect_exit 1: %v", err)
	}
	slow := plan.BackupStep{Name: "slow", Timeout: plan.Duration{Duration: 100 * time.Millisecond, Raw: "100ms"}, Command: &plan.Command{Argv: []string{"sleep", "10"}}}
	t0 := time.Now()
	_, err := runner().Run(context.Background(), plan.Backup{Dir: root, Steps: []plan.BackupStep{slow}}, backup.Run{RunID: "R5"})
	if err == nil || !strings.Contains(err.Error(), "timed out after 100ms") || time.Since(t0) > 5*time.Second {
		t.Errorf("slow step: %v after %s", err, time.Since(t0))
	}
}

// Two backups of one run in the same second get two directories: a backup
// never writes into an earlier one.
func TestFreshDirectoryEachTime(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	b := plan.Backup{Dir: root, Steps: []plan.BackupStep{{Command: sh(`echo x > "$BACKUP_DIR/x"`)}}}
	r1, err1 := runner().Run(context.Background(), b, backup.Run{RunID: "R6"})
	r2, err2 := runner().Run(context.Background(), b, backup.Run{RunID: "R6"})
	if err1 != nil || err2 != nil || r1.Dir == r2.Dir || r2.Dir != r1.Dir+"-2" {
		t.Errorf("dirs %s, %s (%v, %v)", r1.Dir, r2.Dir, err1, err2)
	}
}

// A file that cannot be read fails the step; a directory listed as a file
// is "not found", as the seed's [ -f ] says.
func TestCopyErrors(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	dirAsFile := t.TempDir()
	res, err := runner().Run(context.Background(), plan.Backup{Dir: root, Steps: []plan.BackupStep{{Files: []string{dirAsFile}}}}, backup.Run{RunID: "R7"})
	if err != nil || res.Steps[0].Status != backup.Warn || !strings.Contains(res.Steps[0].Warnings[0], "FILE NOT FOUND (not a regular file") {
		t.Errorf("directory: %+v, %v", res, err)
	}
	// A name already taken in the directory (a command wrote it) is not
	// overwritten.
	src := filepath.Join(t.TempDir(), "taken.txt")
	write(t, src, "original", 0o644)
	_, err = runner().Run(context.Background(), plan.Backup{Dir: root, Steps: []plan.BackupStep{
		{Command: sh(`echo mine > "$BACKUP_DIR/taken.txt"`)},
		{Name: "copy", Files: []string{src}},
	}}, backup.Run{RunID: "R8"})
	var se *backup.StepError
	if !errors.As(err, &se) || se.Index != 1 || !strings.Contains(err.Error(), "file exists") {
		t.Errorf("taken name: %v", err)
	}
}

// A cancelled context (the service shutting down) is returned as such, not
// as a failed step.
func TestCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, err := runner().Run(ctx, plan.Backup{Dir: t.TempDir(), Steps: []plan.BackupStep{{Command: &plan.Command{Argv: []string{"sleep", "10"}}}}}, backup.Run{RunID: "R9"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
	var se *backup.StepError
	if errors.As(err, &se) {
		t.Errorf("cancellation reported as a step failure: %v", err)
	}
}

// topKeys lists the top-level keys of a JSON object in written order.
func topKeys(t *testing.T, raw []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %v %v", tok, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}
