package allinone_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The acceptance test for backups: pre-flight backs up the
// estimator's current-release.json (files and backup_metadata.json written,
// sha256 verified), the bad release is deployed and caught, and the rollback
// restores the file from that run's own backup directory: the target answers
// the release it ran before the change — one that exists nowhere but in the
// backup, so nothing else can have put it back.
func TestBackupAndRestoreFromTheRunsBackup(t *testing.T) {
	tg := startTarget(t)
	p := startPipeline(t, nil)
	backupRoot := filepath.Join(tg.stateDir, "backups") // the plan's .demo/estimator/backups

	// The release running before the change: known only to the backup.
	current := filepath.Join(tg.stateDir, "current-release.json")
	before := []byte(`{"version": "v2.3.9-before", "latency_ms": 5, "error_rate": 0}` + "\n")
	if err := os.WriteFile(current, before, 0o644); err != nil {
		t.Fatal(err)
	}
	if rel := tg.release(t); !strings.Contains(rel, "v2.3.9-before") {
		t.Fatalf("target answers %s before the change", rel)
	}

	// bad-release.yaml backs up the release switch and restores it from
	// the run's backup; the test adds a file that is not there (a warning)
	// and a command that finds the backup through RUNBOOK_BACKUP_DIR.
	planYAML := examplePlan(t, "bad-release.yaml", tg, func(s string) string {
		s = shorten(s)
		files := `files: ["` + current + `"]`
		restore := `restore: {file: "current-release.json", to: "` + current + `"}`
		if !strings.Contains(s, files) || !strings.Contains(s, restore) || !strings.Contains(s, `dir: "`+backupRoot+`"`) {
			t.Fatalf("bad-release.yaml changed shape: no backup of %s restored from the run's backup", current)
		}
		s = strings.Replace(s, files, `files: ["`+current+`", "`+filepath.Join(tg.stateDir, "not-there.conf")+`"]`, 1)
		return strings.Replace(s, restore, restore+`
    - name: "the backup is there"
      command: {argv: [sh, -c, 'test -s "$RUNBOOK_BACKUP_DIR/backup_metadata.json"']}`, 1)
	})
	run := p.submit(t, planYAML)
	rr := p.report(t, run, 60*time.Second)
	evs := p.history(t, run)
	if rr.Status != "ROLLED_BACK" {
		t.Fatalf("ended %s:\n%s\nevents: %v", rr.Status, rr.QcSummary, types(evs))
	}

	// backup.done comes before preflight.passed and says where the backup is.
	bi, pi := index(evs, "backup.done"), index(evs, "preflight.passed")
	if bi < 0 || bi > pi {
		t.Fatalf("backup.done at %d, preflight.passed at %d: %v", bi, pi, types(evs))
	}
	bd := evs[bi].GetBackupDone()
	if filepath.Dir(bd.GetDir()) != backupRoot || !strings.HasPrefix(filepath.Base(bd.GetDir()), run+"-") {
		t.Errorf("backup dir %s is not %s/%s-YYYYMMDD_HHMMSS", bd.GetDir(), backupRoot, run)
	}
	if strings.Join(bd.GetFiles(), ",") != "current-release.json" || len(bd.GetFileDetails()) != 1 {
		t.Fatalf("backup.done = %+v", bd)
	}

	// The file as it was, and its checksum, recomputed.
	saved, err := os.ReadFile(filepath.Join(bd.GetDir(), "current-release.json"))
	if err != nil || !bytes.Equal(saved, before) {
		t.Fatalf("backed-up file = %q, %v; want %q", saved, err, before)
	}
	sum := sha256.Sum256(saved)
	if d := bd.GetFileDetails()[0]; d.GetName() != "current-release.json" || d.GetSize() != int64(len(before)) || d.GetSha256() != hex.EncodeToString(sum[:]) {
		t.Errorf("file_details = %+v, want size %d sha256 %x", d, len(before), sum)
	}

	// backup_metadata.json: the seed's keys first, in its order, then ours.
	raw, err := os.ReadFile(bd.GetMetadataPath())
	if err != nil || bd.GetMetadataPath() != filepath.Join(bd.GetDir(), "backup_metadata.json") {
		t.Fatalf("metadata %s: %v", bd.GetMetadataPath(), err)
	}
	last := -1
	for _, key := range []string{"timestamp", "operator", "environment", "backup_type", "files", "run_id", "change_id", "file_details"} {
		at := bytes.Index(raw, []byte(`"`+key+`":`))
		if at <= last {
			t.Errorf("metadata key %s missing or out of order:\n%s", key, raw)
		}
		last = at
	}
	var md struct {
		Timestamp   string   `json:"timestamp"`
		Operator    string   `json:"operator"`
		Environment string   `json:"environment"`
		BackupType  string   `json:"backup_type"`
		Files       []string `json:"files"`
		RunID       string   `json:"run_id"`
		FileDetails []struct {
			Name   string `json:"name"`
			Size   int64  `json:"size"`
			SHA256 string `json:"sha256"`
		} `json:"file_details"`
	}
	if err := json.Unmarshal(raw, &md); err != nil {
		t.Fatal(err)
	}
	ts, terr := time.Parse("2006-01-02T15:04:05Z", md.Timestamp)
	if terr != nil || time.Since(ts) > time.Minute || md.Operator != "e2e" || md.Environment == "" || md.BackupType != "pre-flight" || md.RunID != run {
		t.Errorf("metadata:\n%s", raw)
	}
	if len(md.Files) != 1 || md.Files[0] != "current-release.json" || len(md.FileDetails) != 1 ||
		md.FileDetails[0].SHA256 != hex.EncodeToString(sum[:]) || md.FileDetails[0].Size != int64(len(before)) {
		t.Errorf("metadata files:\n%s", raw)
	}

	// The missing file was a warning in pre-flight, not a failure.
	var warned bool
	for _, c := range evs[pi].GetPreflightPassed().GetChecks() {
		warned = warned || (c.GetKind() == "backup" && strings.Contains(c.GetMessage(), "not-there.conf: FILE NOT FOUND"))
	}
	if !warned {
		t.Errorf("no FILE NOT FOUND warning in %v", evs[pi].GetPreflightPassed().GetChecks())
	}

	// The rollback restored the backed-up file, verified, and the command
	// step found the run's backup through RUNBOOK_BACKUP_DIR.
	var restored, found bool
	for _, e := range evs {
		if s := e.GetRollbackStepSucceeded(); s != nil {
			restored = restored || (s.GetKind() == "restore" && strings.Contains(s.GetOutputTail(), "verified"))
			found = found || s.GetName() == "the backup is there"
		}
	}
	if !restored || !found {
		t.Errorf("restore succeeded %v, backup found by command %v: %v", restored, found, types(evs))
	}
	if got, _ := os.ReadFile(current); !bytes.Equal(got, before) {
		t.Errorf("current-release.json after the rollback = %q, want %q", got, before)
	}
	if rel := tg.release(t); !strings.Contains(rel, "v2.3.9-before") {
		t.Errorf("after the rollback the target answers %s, want the release it ran before the change", rel)
	}
}
