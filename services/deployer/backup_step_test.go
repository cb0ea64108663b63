package deployer_test

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/backup"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/deployer"
)

// startWith starts a deployer with options o (its consumer's backoff short).
func startWith(t *testing.T, o deployer.Options) *harness {
	t.Helper()
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	ctx, cancel := context.WithCancel(context.Background())
	o.Consumer = eventbus.ConsumerOptions{Backoff: []time.Duration{20 * time.Millisecond}}
	svc := deployer.New(natstest.Bus(t, s, "deployer"), o, testLog(t), nil, nil)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &harness{bus: bus, log: filepath.Join(t.TempDir(), "ran.log")}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func gunzipFile(t *testing.T, path string) string {
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

// events returns the run's events of type typ, in stream order.
func (h *harness) events(t *testing.T, run, typ string) []*runbookv1.Event {
	t.Helper()
	hist, err := h.bus.RunHistory(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	var out []*runbookv1.Event
	for _, e := range hist {
		if e.Event.Type == typ {
			out = append(out, e.Event)
		}
	}
	return out
}

// checkBackup asserts that the run's backup directory holds each file its
// metadata lists once, as measured, nothing else but the metadata, and no
// staging directory; it returns the metadata.
func checkBackup(t *testing.T, dir string) *backup.Metadata {
	t.Helper()
	md, err := backup.ReadMetadata(dir)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(md.Files)+1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("the backup directory holds %v, want the %d listed files %v and the metadata", names, len(md.Files), md.Files)
	}
	seen := map[string]bool{}
	for i, d := range md.FileDetails {
		if seen[d.Name] || d.Name != md.Files[i] {
			t.Errorf("file_details[%d] %s: listed twice or out of order (%v)", i, d.Name, md.Files)
		}
		seen[d.Name] = true
		if fi, err := os.Stat(filepath.Join(dir, d.Name)); err != nil || fi.Size() != d.Size {
			t.Errorf("%s: %v, want %d bytes", d.Name, err, d.Size)
		}
	}
	return md
}

// The seed's deployment-script.sh backs up after blocking traffic ("3.
// Creating deployment backup..."): a deploy step of kind backup after the
// first step adds a database dump (a shell pipeline, `... | gzip >`, whose
// output shows a secret) and the release file to the run's pre-flight
// backup — same directory, same backup_metadata.json, backup.done with
// every file. The deployer crashes right after that step; the redelivered
// deploy resumes without taking the backup again. A later step fails, and
// the rollback's restore steps put back the release file the deploy step
// saved and the nginx.conf pre-flight saved.
func TestBackupStepInTheDeploy(t *testing.T) {
	t.Parallel()
	const run = "R-BACKUP-STEP"
	const secret = "pg-Dump-Passw0rd-4242"
	var crashed sync.Once
	h := startWith(t, deployer.Options{StepFault: func(r, list string, index int) error {
		var err error
		if r == run && list == "steps" && index == 1 {
			crashed.Do(func() { err = errors.New("crash after the backup step") })
		}
		return err
	}})
	srv := t.TempDir()
	root := filepath.Join(t.TempDir(), "backups")
	nginx, release, counter := filepath.Join(srv, "nginx.conf"), filepath.Join(srv, "current-release.json"), filepath.Join(srv, "dumps")
	writeFile(t, nginx, "upstream estimator { server 127.0.0.1:3001; }\n")
	writeFile(t, release, `{"release": "v2.4.0"}`)

	planYAML := fmt.Sprintf(`change_request: {id: CR-BK, title: backup after blocking traffic, type: maintenance, priority: low}
preflight:
  backup:
    dir: %[1]q
    steps:
      - files: [%[2]q]
deploy:
  steps:
    - name: "1. block traffic"
      command: {argv: [sh, -c, 'echo "return 503;" > "$0"', %[2]q]}
    - name: "3. backup"
      backup:
        steps:
          - name: database
            command:
              shell: 'echo data | gzip > "$BACKUP_DIR/out.gz"; echo "pg_dump as kis_user/$DB_PASSWORD: done"; echo x >> %[4]s'
              env: {DB_PASSWORD: %[5]q}
          - name: release
            files: [%[3]q]
    - name: "4. switch release"
      command: {argv: [sh, -c, 'echo "{\"release\": \"v2.4.1-bad\"}" > "$0"', %[3]q]}
    - name: "5. migrate"
      command: {argv: ["false"]}
rollback_plan:
  rollback_steps:
    - name: put the release back
      restore: {file: current-release.json, to: %[3]q}
    - name: restore traffic
      restore: {file: nginx.conf, to: %[2]q}
`, root, nginx, release, counter, secret)
	p, issues := plan.Parse("p.yml", []byte(planYAML))
	if p == nil {
		t.Fatalf("plan: %v", issues)
	}
	// Pre-flight's backup, taken with the same package the preflight
	// service uses, and its backup.done.
	pre, err := (&backup.Runner{}).Run(context.Background(), *p.Preflight.Backup, backup.Run{RunID: run, ChangeID: "CR-BK"})
	if err != nil {
		t.Fatal(err)
	}
	h.publish(t, changeRequested(run, planYAML),
		eventbus.New(run, &runbookv1.Event_BackupDone{BackupDone: &runbookv1.BackupDone{Dir: pre.Dir, Files: pre.Metadata.Files, MetadataPath: pre.MetadataPath}}),
		preflightPassed(run))
	h.waitFor(t, run, "rollback.done")

	// The rollback restored the file the deploy step backed up, and the
	// one pre-flight backed up.
	if got := readFile(t, release); got != `{"release": "v2.4.0"}` {
		t.Errorf("after the rollback the release file holds %q, want the one backed up during the deploy", got)
	}
	if got := readFile(t, nginx); got != "upstream estimator { server 127.0.0.1:3001; }\n" {
		t.Errorf("after the rollback nginx.conf holds %q", got)
	}
	if n := h.count(t, run, "rollback.step.succeeded"); n != 2 {
		t.Errorf("%d rollback steps succeeded, want 2", n)
	}

	// One directory, pre-flight's, now with the step's files too.
	if entries, _ := os.ReadDir(root); len(entries) != 1 {
		t.Errorf("%d backup directories, want the run's one", len(entries))
	}
	md := checkBackup(t, pre.Dir)
	if got := strings.Join(md.Files, ","); got != "nginx.conf,out.gz,current-release.json" {
		t.Errorf("backup_metadata.json files %s", got)
	}
	if len(md.Backups) != 2 || md.Backups[0].BackupType != "pre-flight" || md.Backups[1].BackupType != "deployment" || md.Backups[1].Step != "deploy.steps[1]" {
		t.Errorf("backups %+v", md.Backups)
	}
	if got := gunzipFile(t, filepath.Join(pre.Dir, "out.gz")); got != "data\n" {
		t.Errorf("out.gz holds %q", got)
	}
	// Taken once: the redelivered deploy did not run it again.
	if got := readFile(t, counter); got != "x\n" {
		t.Errorf("the backup's command ran %d times, want once", strings.Count(got, "x"))
	}
	if n := len(h.events(t, run, "deploy.step.started")); n != 4 {
		t.Errorf("%d deploy.step.started, want 4 (one per step: the backup step is not started again)", n)
	}

	// backup.done: pre-flight's, then the step's with every file.
	dones := h.events(t, run, "backup.done")
	if len(dones) != 2 {
		t.Fatalf("%d backup.done, want 2", len(dones))
	}
	bd := dones[1].GetBackupDone()
	if bd.GetDir() != pre.Dir || strings.Join(bd.GetFiles(), ",") != "nginx.conf,out.gz,current-release.json" || len(bd.GetFileDetails()) != 3 || bd.GetMetadataPath() != pre.MetadataPath {
		t.Errorf("the step's backup.done: %+v", bd)
	}

	// The step's output says what it backed up; the secret its command
	// printed is redacted.
	var out string
	for _, e := range h.events(t, run, "deploy.step.succeeded") {
		if se := e.GetDeployStepSucceeded(); se.GetIndex() == 1 {
			out = se.GetOutputTail()
			if se.GetKind() != "backup" {
				t.Errorf("kind %s", se.GetKind())
			}
		}
	}
	if strings.Contains(out, secret) || !strings.Contains(out, "pg_dump as kis_user/[REDACTED:DB_PASSWORD]: done") ||
		!strings.Contains(out, "backed up 2 file(s): out.gz, current-release.json into the run's backup "+pre.Dir) {
		t.Errorf("backup step output:\n%s", out)
	}
}

// A deploy resumed after a crash in the middle of its backup step (the
// step started, never ended; the crashed attempt left a half-written file
// in the run's backup directory, which it had just made, and more in its
// staging directory) takes the backup again, whole: one directory, each
// file once and complete, listed in backup_metadata.json — and the
// rollback restores from it.
func TestBackupStepResumedAfterACrash(t *testing.T) {
	t.Parallel()
	const run = "R-BACKUP-CRASH"
	h := start(t)
	srv := t.TempDir()
	root := filepath.Join(t.TempDir(), "backups")
	release, counter := filepath.Join(srv, "current-release.json"), filepath.Join(srv, "dumps")
	writeFile(t, release, `{"release": "v2.4.0"}`)
	planYAML := fmt.Sprintf(`change_request: {id: CR-BK2, title: crash in the backup, type: maintenance, priority: low}
deploy:
  steps:
    - name: "1. block traffic"
      command: {argv: ["true"]}
    - name: "3. backup"
      backup:
        dir: %[1]q
        steps:
          - name: database
            command: {shell: 'echo data | gzip > "$BACKUP_DIR/out.gz"; echo x >> %[3]s'}
          - files: [%[2]q]
    - name: "4. switch release"
      command: {argv: [sh, -c, 'echo "{\"release\": \"v2.4.1-bad\"}" > "$0"', %[2]q]}
    - name: "5. migrate"
      command: {argv: ["false"]}
rollback_plan:
  rollback_steps:
    - restore: {file: current-release.json, to: %[2]q}
`, root, release, counter)
	deployStarted := time.Date(2025, 9, 23, 2, 0, 7, 0, time.UTC)
	// What the crashed attempt left: the run's directory, named by the
	// deploy's start, with a half-written out.gz, and its staging directory.
	dir := filepath.Join(root, run+"-20250923_020007")
	writeFile(t, filepath.Join(dir, "out.gz"), "half a dump")
	writeFile(t, filepath.Join(backup.StagingDir(dir, "deploy.steps[1]"), "current-release.json"), `{"rel`)
	ds := eventbus.New(run, &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 4}})
	ds.Time = timestamppb.New(deployStarted)
	h.publish(t, changeRequested(run, planYAML), ds,
		eventbus.New(run, &runbookv1.Event_DeployStepStarted{DeployStepStarted: &runbookv1.StepEvent{List: "steps", Index: 0, Attempt: 1}}, "steps", 0, "attempt-1"),
		eventbus.New(run, &runbookv1.Event_DeployStepSucceeded{DeployStepSucceeded: &runbookv1.StepEvent{List: "steps", Index: 0, Attempt: 1}}, "steps", 0, "attempt-1"),
		eventbus.New(run, &runbookv1.Event_DeployStepStarted{DeployStepStarted: &runbookv1.StepEvent{List: "steps", Index: 1, Attempt: 1, Kind: "backup"}}, "steps", 1, "attempt-1"),
		preflightPassed(run),
	)
	h.waitFor(t, run, "rollback.done")
	if got := readFile(t, release); got != `{"release": "v2.4.0"}` {
		t.Errorf("after the rollback the release file holds %q", got)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 1 {
		t.Errorf("%d backup directories, want the run's one", len(entries))
	}
	md := checkBackup(t, dir)
	if got := strings.Join(md.Files, ","); got != "out.gz,current-release.json" || md.BackupType != "deployment" {
		t.Errorf("backup_metadata.json: files %s, type %s", got, md.BackupType)
	}
	if got := gunzipFile(t, filepath.Join(dir, "out.gz")); got != "data\n" {
		t.Errorf("out.gz holds %q", got)
	}
	if got := readFile(t, counter); got != "x\n" {
		t.Errorf("the resumed backup's command ran %d times, want once", strings.Count(got, "x"))
	}
	dones := h.events(t, run, "backup.done")
	if len(dones) != 1 || dones[0].GetBackupDone().GetDir() != dir {
		t.Fatalf("backup.done: %v", dones)
	}
	var attempts []int32
	for _, e := range h.events(t, run, "deploy.step.succeeded") {
		if se := e.GetDeployStepSucceeded(); se.GetIndex() == 1 {
			attempts = append(attempts, se.GetAttempt())
		}
	}
	if len(attempts) != 1 || attempts[0] != 2 {
		t.Errorf("the backup step succeeded at attempts %v, want once, at attempt 2 (re-run after the crash: a backup is safe to re-run)", attempts)
	}
}
