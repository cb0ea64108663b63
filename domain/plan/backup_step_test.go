package plan

import (
	"strings"
	"testing"
	"time"
)

// The seed's deployment-script.sh backs up after blocking traffic ("3.
// Creating deployment backup..."): a deploy step of kind backup, with the
// shape of preflight.backup, its database dump a shell pipeline; a
// rollback restores what it saved.
func TestBackupStep(t *testing.T) {
	t.Parallel()
	p, issues := Parse("b.yml", []byte(`change_request: {id: CR-B, title: backup step}
preflight:
  backup:
    dir: /backups
    steps:
      - files: [/etc/nginx/nginx.conf]
deploy:
  steps:
    - name: "1. block traffic"
      command: {argv: [cp, /etc/nginx/maintenance.conf, /etc/nginx/nginx.conf]}
    - name: "3. backup"
      backup:
        steps:
          - name: database
            command: {shell: 'pg_dump -h localhost -U kis_user kis_db | gzip > "$BACKUP_DIR/database.sql.gz"'}
            timeout: 10m
          - files: [/app/config/production.json]
rollback_plan:
  rollback_steps:
    - {restore: {file: production.json, to: /app/config/production.json}}
    - {restore: {file: nginx.conf, to: /etc/nginx/nginx.conf}}
`))
	if p == nil || len(errorsOf(issues)) != 0 {
		t.Fatalf("issues: %v", issues)
	}
	s := p.Deploy.Steps[1]
	if s.Kind() != "backup" || !s.SafeToRerun() || s.Label() != "3. backup" || s.IsManual() {
		t.Errorf("backup step: kind %s, safe to re-run %v, label %q", s.Kind(), s.SafeToRerun(), s.Label())
	}
	if got := s.Backup.Steps[0].Command.Shell; !strings.Contains(got, "| gzip >") || len(s.Backup.Steps[0].Command.Argv) != 0 {
		t.Errorf("shell backup command %+v", s.Backup.Steps[0].Command)
	}
	// No timeout: the sum of its backup steps' (10m + the default 30m).
	if got := s.EffectiveTimeout(); got != 40*time.Minute {
		t.Errorf("timeout %s, want 40m", got)
	}
	s.Timeout = Duration{Duration: time.Minute, Raw: "1m"}
	if got := s.EffectiveTimeout(); got != time.Minute {
		t.Errorf("written timeout %s, want 1m", got)
	}
	unnamed := Step{Backup: &Backup{Steps: []BackupStep{{Files: []string{"/a"}}, {Name: "db", Command: &Command{Argv: []string{"true"}}}}}}
	if got := unnamed.Label(); got != "backup: files backup step 1, db" {
		t.Errorf("label %q", got)
	}
	var paths []string
	for _, b := range p.Backups() {
		paths = append(paths, b.Path)
	}
	if got := strings.Join(paths, " "); got != "preflight.backup deploy.steps[1].backup" || p.BackupDir() != "/backups" {
		t.Errorf("backups %s, dir %s", got, p.BackupDir())
	}
	for _, c := range []struct {
		list  string
		index int
		want  string
	}{{"steps", 1, "deploy.steps[1]"}, {"finally", 0, "deploy.finally[0]"}, {"rollback", 2, "rollback_plan.rollback_steps[2]"}} {
		if got := StepPath(c.list, c.index); got != c.want {
			t.Errorf("StepPath(%s, %d) = %s, want %s", c.list, c.index, got, c.want)
		}
	}
}

// Without preflight.backup, a backup step is the run's backup: a restore
// may name what it saves, and its dir is the run's (default backups).
func TestBackupStepWithoutPreflightBackup(t *testing.T) {
	t.Parallel()
	p, issues := Parse("b.yml", []byte(`deploy:
  steps:
    - backup: {steps: [{files: [/srv/app/current-release.json]}]}
rollback_plan:
  rollback_steps:
    - {restore: {file: current-release.json, to: /srv/app/current-release.json}}
`))
	if p == nil || len(errorsOf(issues)) != 0 {
		t.Fatalf("issues: %v", issues)
	}
	if p.BackupDir() != DefaultBackupDir {
		t.Errorf("dir %s", p.BackupDir())
	}
}

// A wrong backup step is refused at its line, saying what is allowed; the
// run's backups share one directory, so a name or a dir that clashes with
// an earlier backup is refused at the later one.
func TestBackupStepErrors(t *testing.T) {
	t.Parallel()
	const head = "change_request: {id: CR-B, title: backup}\n"
	for _, c := range []struct {
		name, yaml string
		want       []wantIssue
	}{
		{"no steps", head + `deploy:
  steps:
    - name: backup
      backup: {dir: /backups}
`, []wantIssue{{"deploy.steps[0].backup.steps", 5, 15, "", []string{"a backup step needs steps", "as in preflight.backup"}}}},
		{"entry without a kind", head + `deploy:
  steps:
    - backup:
        steps:
          - name: nothing
`, []wantIssue{{"deploy.steps[0].backup.steps[0]", 6, 13, "", []string{"a backup step needs exactly one of command, files"}}}},
		{"empty shell", head + `deploy:
  steps:
    - backup:
        steps:
          - command: {shell: " "}
`, []wantIssue{{"deploy.steps[0].backup.steps[0].command.shell", 6, 30, " ", []string{"shell must be a script"}}}},
		{"argv and shell", head + `preflight:
  backup:
    steps:
      - command: {argv: [pg_dump], shell: "pg_dump | gzip"}
`, []wantIssue{{"preflight.backup.steps[0].command", 5, 18, "", []string{"argv or shell, not both"}}}},
		{"a name the pre-flight backup took", head + `preflight:
  backup:
    steps:
      - files: [/etc/nginx/nginx.conf]
rollback_plan:
  rollback_steps:
    - backup: {steps: [{files: [/etc/nginx/nginx.conf]}]}
`, []wantIssue{{"rollback_plan.rollback_steps[0].backup.steps[0].files[0]", 8, 33, "/etc/nginx/nginx.conf", []string{"already the name of the copy of \"/etc/nginx/nginx.conf\"", "share one directory"}}}},
		{"another dir", head + `preflight:
  backup:
    dir: /backups
    steps:
      - files: [/etc/nginx/nginx.conf]
deploy:
  steps:
    - backup: {dir: /var/backups, steps: [{files: [/app/.env]}]}
`, []wantIssue{{"deploy.steps[0].backup.dir", 9, 21, "/var/backups", []string{`is not the dir preflight.backup.dir sets ("/backups")`, "one backup directory"}}}},
		{"backup and command", head + `deploy:
  steps:
    - backup: {steps: [{files: [/a]}]}
      command: {argv: ["true"]}
`, []wantIssue{{"deploy.steps[0]", 4, 7, "", []string{"sets command and backup", "exactly one of command, http, wait, restore, sql, backup is allowed"}}}},
		{"shell in a check", head + `preflight:
  checks:
    - command: {shell: "test -f /etc/app.conf"}
`, []wantIssue{{"preflight.checks[0].command.shell", 4, 24, "test -f /etc/app.conf", []string{"shell is allowed only in deploy, rollback and finally steps and backup steps"}}}},
		// Messages that list step kinds list every kind, and where a text is
		// a step too (rollback_steps) they say so.
		{"a deploy step of no kind", head + `deploy:
  steps:
    - name: nothing
`, []wantIssue{{"deploy.steps[0]", 4, 7, "", []string{"a step needs exactly one of command, http, wait, restore, sql, backup; none is set"}}}},
		{"a rollback step of no kind", head + `rollback_plan:
  rollback_steps:
    - name: nothing
`, []wantIssue{{"rollback_plan.rollback_steps[0]", 4, 7, "", []string{"a rollback step needs exactly one of command, http, wait, restore, sql, backup (or it is a text: a described manual step, shown to people and not executed); none is set"}}}},
		{"a text in deploy", head + `deploy:
  steps:
    - "restart the service"
`, []wantIssue{{"deploy.steps[0]", 4, 7, "restart the service", []string{"exactly one of command, http, wait, restore, sql, backup; a text step"}}}},
		{"a step that is a list", head + `deploy:
  steps:
    - [a, b]
`, []wantIssue{{"deploy.steps[0]", 4, 7, "", []string{"one of command, http, wait, restore, sql, backup (or, in rollback_steps, a text"}}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, issues := Parse("b.yml", []byte(c.yaml))
			checkIssues(t, errorsOf(issues), c.want)
		})
	}
	// Shell in a backup command is accepted, in pre-flight as in a step.
	_, issues := Parse("b.yml", []byte(head+`preflight:
  backup:
    steps:
      - command: {shell: 'pg_dump kis_db | gzip > "$BACKUP_DIR/database.sql.gz"'}
`))
	if errs := errorsOf(issues); len(errs) != 0 {
		t.Errorf("shell in a pre-flight backup command: %v", errs)
	}
	// The one-text rollback_steps warning lists every kind.
	_, issues = Parse("b.yml", []byte(head+"rollback_plan:\n  rollback_steps: \"1. a 2. b\"\n"))
	for _, path := range []string{"rollback_plan.rollback_steps", "deploy.steps"} {
		var w *Issue
		for _, i := range warningsOf(issues) {
			if i.Path == path {
				w = &i
			}
		}
		if w == nil || !strings.Contains(w.Message, "command, http, wait, restore, sql, backup") {
			t.Errorf("warning at %s: %v", path, w)
		}
	}
}
