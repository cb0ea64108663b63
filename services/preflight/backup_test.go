package preflight_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/preflight"
)

type harness struct {
	bus  *eventbus.Bus
	root string // the plans' backup dir
	src  string // files to back up
}

// start runs the preflight service on a fresh server; ENVIRONMENT comes
// from its Env (no process environment involved).
func start(t *testing.T, before ...*runbookv1.Event) *harness {
	t.Helper()
	s := natstest.Server(t)
	h := &harness{bus: natstest.Bus(t, s, "test"), root: filepath.Join(t.TempDir(), "backups"), src: t.TempDir()}
	for _, ev := range before {
		if _, err := h.bus.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	env := func(name string) (string, bool) {
		if name == "ENVIRONMENT" {
			return "staging", true
		}
		return os.LookupEnv(name)
	}
	svc := preflight.New(natstest.Bus(t, s, "preflight"), preflight.Options{Env: env}, slog.New(slog.DiscardHandler), nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

func (h *harness) plan(check, steps string) string {
	return fmt.Sprintf(`change_request: {id: CR-B, title: backup, type: maintenance, priority: low}
preflight:
  checks:
    - %s
  backup:
    dir: %q
    steps:
%s
deploy:
  steps:
    - {command: {argv: ["true"]}}
`, check, h.root, steps)
}

func (h *harness) submit(t *testing.T, run, planYAML string) {
	t.Helper()
	ev := eventbus.New(run, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{PlanYaml: planYAML, ChangeId: "CR-B"}})
	ev.Actor = "alice"
	if _, err := h.bus.Publish(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
}

// decided waits for preflight.passed or preflight.failed and returns the
// run's event types in order.
func (h *harness) decided(t *testing.T, run string) []*runbookv1.Event {
	t.Helper()
	var evs []*runbookv1.Event
	natstest.Eventually(t, 15*time.Second, run+" decided", func() bool {
		hist, err := h.bus.RunHistory(context.Background(), run)
		if err != nil {
			return false
		}
		evs = evs[:0]
		done := false
		for _, e := range hist {
			evs = append(evs, e.Event)
			done = done || e.Event.Type == "preflight.passed" || e.Event.Type == "preflight.failed"
		}
		return done
	})
	return evs
}

func find(evs []*runbookv1.Event, typ string) (int, *runbookv1.Event) {
	for i, e := range evs {
		if e.Type == typ {
			return i, e
		}
	}
	return -1, nil
}

const passing = `{name: path, env: {required: [PATH]}}`

func TestBackupThenPassed(t *testing.T) {
	t.Parallel()
	h := start(t)
	conf := filepath.Join(h.src, "production.json")
	if err := os.WriteFile(conf, []byte(`{"db": "kis_db"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	h.submit(t, "RB1", h.plan(passing, fmt.Sprintf(`      - {name: database, command: {argv: [sh, -c, 'echo dump > "$BACKUP_DIR/database.sql"']}}
      - {name: configuration, files: [%q, %q]}`, conf, filepath.Join(h.src, ".env"))))
	evs := h.decided(t, "RB1")
	bi, bd := find(evs, "backup.done")
	pi, passed := find(evs, "preflight.passed")
	if bd == nil || passed == nil || bi > pi {
		t.Fatalf("want backup.done before preflight.passed: %v", evs)
	}
	b := bd.GetBackupDone()
	if !strings.HasPrefix(filepath.Base(b.GetDir()), "RB1-") || filepath.Dir(b.GetDir()) != h.root || b.GetMetadataPath() != filepath.Join(b.GetDir(), "backup_metadata.json") {
		t.Errorf("backup.done = %+v", b)
	}
	if strings.Join(b.GetFiles(), ",") != "database.sql,production.json" || len(b.GetFileDetails()) != 2 {
		t.Fatalf("files = %v %v", b.GetFiles(), b.GetFileDetails())
	}
	for _, d := range b.GetFileDetails() {
		data, err := os.ReadFile(filepath.Join(b.GetDir(), d.GetName()))
		sum := sha256.Sum256(data)
		if err != nil || d.GetSize() != int64(len(data)) || d.GetSha256() != hex.EncodeToString(sum[:]) {
			t.Errorf("%+v does not match the file on disk (%v)", d, err)
		}
	}
	var md map[string]any
	raw, _ := os.ReadFile(b.GetMetadataPath())
	if err := json.Unmarshal(raw, &md); err != nil || md["operator"] != "alice" || md["environment"] != "staging" || md["backup_type"] != "pre-flight" || md["change_id"] != "CR-B" {
		t.Errorf("metadata = %s (%v)", raw, err)
	}
	// Each backup step is a check result of kind backup; the missing .env
	// is a warning, which does not fail the pre-flight.
	var kinds []string
	for _, c := range passed.GetPreflightPassed().GetChecks() {
		kinds = append(kinds, c.GetKind()+":"+strings.TrimPrefix(c.GetStatus().String(), "CHECK_STATUS_"))
	}
	if got := strings.Join(kinds, ","); got != "env:PASS,backup:PASS,backup:WARN" {
		t.Errorf("checks = %s", got)
	}
	if msg := passed.GetPreflightPassed().GetChecks()[2].GetMessage(); !strings.Contains(msg, ".env: FILE NOT FOUND") {
		t.Errorf("warning message = %q", msg)
	}
	if bd.GetCausationId() != evs[0].GetId() {
		t.Errorf("backup.done caused by %s", bd.GetCausationId())
	}
}

func TestFailedBackupFailsPreflight(t *testing.T) {
	t.Parallel()
	h := start(t)
	h.submit(t, "RB2", h.plan(passing, `      - {name: database, command: {argv: [sh, -c, 'echo "pg_dump: connection refused" >&2; exit 1']}}`))
	evs := h.decided(t, "RB2")
	_, failed := find(evs, "preflight.failed")
	if failed == nil {
		t.Fatalf("no preflight.failed: %v", evs)
	}
	if reason := failed.GetPreflightFailed().GetReason(); !strings.Contains(reason, "backup step 1 (database) failed") || !strings.Contains(reason, "exited 1") {
		t.Errorf("reason = %q", reason)
	}
	checks := failed.GetPreflightFailed().GetChecks()
	if last := checks[len(checks)-1]; last.GetKind() != "backup" || last.GetStatus() != runbookv1.CheckStatus_CHECK_STATUS_FAIL || !strings.Contains(last.GetMessage(), "connection refused") {
		t.Errorf("backup check = %+v", last)
	}
	if i, _ := find(evs, "backup.done"); i >= 0 {
		t.Error("backup.done after a failed backup")
	}
}

// A failed blocking check skips the backup.
func TestFailedCheckSkipsBackup(t *testing.T) {
	t.Parallel()
	h := start(t)
	h.submit(t, "RB3", h.plan(`{name: missing, env: {required: [RUNBOOK_TEST_SURELY_UNSET_VARIABLE]}}`, `      - {command: {argv: ["true"]}}`))
	evs := h.decided(t, "RB3")
	if i, _ := find(evs, "preflight.failed"); i < 0 {
		t.Fatalf("no preflight.failed: %v", evs)
	}
	if _, err := os.Stat(h.root); !os.IsNotExist(err) {
		t.Errorf("backup dir made despite the failed check: %v", err)
	}
}

// After a crash between backup.done and the decision, the redelivered
// change.requested does not back up again.
func TestBackupNotRepeated(t *testing.T) {
	t.Parallel()
	done := eventbus.New("RB4", &runbookv1.Event_BackupDone{BackupDone: &runbookv1.BackupDone{Dir: "/backups/RB4-20250923_020000", Files: []string{"a"}}})
	h := start(t, done)
	h.submit(t, "RB4", h.plan(passing, `      - {command: {argv: [sh, -c, 'echo x > "$BACKUP_DIR/x"']}}`))
	evs := h.decided(t, "RB4")
	_, passed := find(evs, "preflight.passed")
	if passed == nil {
		t.Fatalf("no preflight.passed: %v", evs)
	}
	if _, err := os.Stat(h.root); !os.IsNotExist(err) {
		t.Errorf("backed up again: %v", err)
	}
	checks := passed.GetPreflightPassed().GetChecks()
	if last := checks[len(checks)-1]; last.GetKind() != "backup" || !strings.Contains(last.GetMessage(), "/backups/RB4-20250923_020000") {
		t.Errorf("backup check = %+v", last)
	}
	n := 0
	for _, e := range evs {
		if e.Type == "backup.done" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("backup.done %d times", n)
	}
}

// The run's backups share one directory: when only a backup step of the
// deploy writes dir, pre-flight's backup is made under it too (where the
// step will add to it). A pre-flight backup command may be a shell
// pipeline (the seed's pg_dump | gzip).
func TestBackupDirFromABackupStep(t *testing.T) {
	t.Parallel()
	h := start(t)
	planYAML := fmt.Sprintf(`change_request: {id: CR-B, title: backup, type: maintenance, priority: low}
preflight:
  backup:
    steps:
      - {name: database, command: {shell: 'echo dump | gzip > "$BACKUP_DIR/database.sql.gz"'}}
deploy:
  steps:
    - {command: {argv: ["true"]}}
    - backup: {dir: %q, steps: [{files: [/etc/hostname]}]}
`, h.root)
	h.submit(t, "RB-DIR", planYAML)
	evs := h.decided(t, "RB-DIR")
	_, bd := find(evs, "backup.done")
	if bd == nil {
		t.Fatalf("no backup.done: %v", evs)
	}
	b := bd.GetBackupDone()
	if filepath.Dir(b.GetDir()) != h.root || strings.Join(b.GetFiles(), ",") != "database.sql.gz" {
		t.Errorf("backup.done = %+v, want the dir under %s", b, h.root)
	}
}
