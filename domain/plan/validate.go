package plan

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The words the plan accepts. Risk words are scored by package risk.
var (
	changeTypes      = []string{"maintenance", "bugfix", "enhancement", "emergency"}
	priorities       = []string{"low", "medium", "high", "critical"}
	probabilityWords = []string{"very_low", "low", "medium", "high", "very_high"}
	impactWords      = []string{"negligible", "minor", "low", "moderate", "medium", "major", "high", "severe", "critical"}
	httpMethods      = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
	notifyWhens      = []string{NotifyAlways, NotifyFailure, NotifySuccess}
	smokeTypes       = []string{"smoke", "regression", "performance"}
	triggerOps       = []string{">", ">=", "<", "<="}
	checkKinds       = []string{"http", "tcp", "env", "command", "postgres", "redis", "nats", "resources", "file"}
	stepKinds        = []string{"command", "http", "wait", "restore", "sql", "backup"}
	sourceKinds      = []string{"http_probe", "prometheus_scrape", "prometheus_query", "system", "alertmanager"}
	notifyKinds      = []string{"slack", "webhook", "email"}
	notifyOns        = []string{NotifyOnStarted, NotifyOnFinal}
	backupStepKinds  = []string{"command", "files"}
)

// ProbabilityWords are the accepted risk probability words, matrix order.
func ProbabilityWords() []string { return slices.Clone(probabilityWords) }

// ImpactWords are the accepted risk impact words: the matrix's
// negligible..severe and the template's low/medium/high/critical.
func ImpactWords() []string { return slices.Clone(impactWords) }

var (
	envName    = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)
	headerName = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
)

type checker struct {
	d      *decoder
	issues []Issue
	// backups are the plan's backups (Plan.Backups), which restore steps
	// refer to.
	backups []PlacedBackup
	// backupNames: each name the plan's backups give a file in the run's
	// one backup directory → what produces it.
	backupNames map[string]string
	// backupDir is the first dir a backup sets, and where ("" when none).
	backupDir, backupDirPath string
	// backupSteps are the paths of the steps whose one kind is backup.
	backupSteps map[string]bool
	// reverts is the run a revert plan undoes (Plan.Reverts), "" for
	// another plan: its restore steps read that run's backup.
	reverts string
}

// stepKindsText lists the kinds of a deploy, finally or rollback step for
// messages; where a text (a described manual step) is a step too (textOK:
// rollback_steps), it says so.
func stepKindsText(textOK bool) string {
	if textOK {
		return quoteList(stepKinds) + " (or it is a text: a described manual step, shown to people and not executed)"
	}
	return quoteList(stepKinds)
}

// skip is true when path or an enclosing path already has a decode error:
// one mistake is reported once.
func (c *checker) skip(path string) bool {
	for p := path; ; p = parent(p) {
		if c.d.bad[p] {
			return true
		}
		if p == "" {
			return false
		}
	}
}

// pos is where path was written, or where its nearest written ancestor
// starts; 0,0 when only the document itself is there.
func (c *checker) pos(path string) (line, col int, value string) {
	for p := path; p != ""; p = parent(p) {
		n, ok := c.d.nodes[p]
		if !ok {
			continue
		}
		line, col = nodePos(n)
		if line == 0 {
			line, col = nodePos(c.d.keys[p])
		}
		if line == 0 {
			continue
		}
		if p == path {
			value, _ = scalarText(n)
		}
		return line, col, value
	}
	return 0, 0, ""
}

func (c *checker) add(warning bool, path, format string, args ...any) {
	if c.skip(path) {
		return
	}
	if _, written := c.d.nodes[path]; !written && c.d.unknownIn[parent(path)] {
		// Something missing next to an unknown field is most likely that
		// field misspelt: the unknown field is the one error to report.
		return
	}
	line, col, value := c.pos(path)
	c.issues = append(c.issues, Issue{Path: path, Line: line, Column: col, Value: value, Message: fmt.Sprintf(format, args...), Warning: warning})
}

func (c *checker) errorf(path, format string, args ...any) { c.add(false, path, format, args...) }
func (c *checker) warnf(path, format string, args ...any)  { c.add(true, path, format, args...) }

// set reports whether path was written with a non-null value.
func (c *checker) set(path string) bool { return c.d.set(path) }

func quoteList(words []string) string {
	return strings.Join(words, ", ")
}

func (c *checker) enum(path, value, what string, allowed []string) {
	c.enumText(path, value, what, allowed, "one of "+quoteList(allowed))
}

// enumText is enum with the allowed words explained in allowedText.
func (c *checker) enumText(path, value, what string, allowed []string, allowedText string) {
	if value == "" || slices.Contains(allowed, value) {
		return
	}
	hint := ""
	for _, a := range allowed {
		if dist := editDistance(strings.ToLower(value), strings.ToLower(a)); dist <= 1 || (dist == 2 && len(value) >= 5) {
			hint = fmt.Sprintf(" (did you mean %q?)", a)
			break
		}
	}
	c.errorf(path, "%q is not %s%s: use %s", value, what, hint, allowedText)
}

// oneOf checks that exactly one of the kind fields under path is written
// and returns it ("" when none or several).
func (c *checker) oneOf(path, what string, kinds []string) string {
	return c.oneOfText(path, what, kinds, quoteList(kinds))
}

// oneOfText is oneOf with the kinds explained in kindsText.
func (c *checker) oneOfText(path, what string, kinds []string, kindsText string) string {
	if c.skip(path) {
		return ""
	}
	var set []string
	for _, k := range kinds {
		if c.set(joinKey(path, k)) {
			set = append(set, k)
		}
	}
	switch len(set) {
	case 1:
		return set[0]
	case 0:
		if !c.d.unknownIn[path] {
			c.errorf(path, "%s needs exactly one of %s; none is set", what, kindsText)
		}
	default:
		c.errorf(path, "%s sets %s: exactly one of %s is allowed; split it into %d entries", what, strings.Join(set, " and "), quoteList(kinds), len(set))
	}
	return ""
}

func (c *checker) required(path, value, what string) bool {
	if strings.TrimSpace(value) == "" {
		c.errorf(path, "%s is required", what)
		return false
	}
	return true
}

func (c *checker) httpURL(path, raw string, required bool) {
	if raw == "" {
		if required {
			c.errorf(path, "url is required: an http:// or https:// URL with a host, e.g. https://api.example.com/health")
		}
		return
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		c.errorf(path, "%q is not an http:// or https:// URL with a host: write e.g. https://api.example.com/health", raw)
	}
}

func (c *checker) natsURL(path, raw string) {
	if raw == "" {
		c.errorf(path, "url is required: a NATS URL such as nats://127.0.0.1:4222 (or url_env: the environment variable holding one with credentials)")
		return
	}
	for _, one := range strings.Split(raw, ",") {
		u, err := url.Parse(strings.TrimSpace(one))
		if err != nil || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme) || u.Hostname() == "" {
			c.errorf(path, "%q is not a NATS URL: write nats://host:4222 (or tls://, ws://, wss://; several separated by commas)", raw)
			return
		}
	}
}

func (c *checker) hostPort(path, raw, what string) {
	host, port, err := net.SplitHostPort(raw)
	if err == nil {
		n, perr := strconv.Atoi(port)
		if perr != nil || n < 1 || n > 65535 || host == "" {
			err = fmt.Errorf("bad port")
		}
	}
	if err != nil {
		c.errorf(path, "%q is not a %s address: write host:port, e.g. db.internal:5432 or [::1]:6379", raw, what)
	}
}

func (c *checker) env(path, name string) {
	if name == "" {
		c.errorf(path, "an environment variable name is required (like SLACK_WEBHOOK_URL: capitals, digits and _, not starting with a digit)")
		return
	}
	if !envName.MatchString(name) {
		c.errorf(path, "%q is not an environment variable name: use capitals, digits and _ ([A-Z_][A-Z0-9_]*), e.g. DATABASE_URL; the value itself never goes in the plan", name)
	}
}

func (c *checker) headersEnv(path string, h map[string]string) {
	for _, k := range sortedKeys(h) {
		kp := joinKey(path, k)
		if !headerName.MatchString(k) {
			c.errorf(kp, "%q is not an HTTP header name: use letters, digits and - (e.g. Authorization, X-Api-Key)", k)
		}
		c.env(kp, h[k])
	}
}

func (c *checker) method(path, m string) {
	c.enum(path, m, "an HTTP method", httpMethods)
}

func (c *checker) status(path string, s int) {
	if c.set(path) && (s < 100 || s > 599) {
		c.errorf(path, "%d is not an HTTP status: use 100..599 (leave it out to accept any 2xx)", s)
	}
}

func (c *checker) nonNegative(path string, v float64, what string) {
	if v < 0 {
		c.errorf(path, "%s must not be negative: use 0 or more", what)
	}
}

// duration checks a written duration: > 0, or ≥ 0 when zeroOK.
func (c *checker) duration(path string, d Duration, zeroOK bool) {
	if !c.set(path) {
		return
	}
	switch {
	case d.Duration < 0:
		c.errorf(path, "%q is negative: a duration must be 0 or more", d.Raw)
	case d.Duration == 0 && !zeroOK:
		c.errorf(path, "%q is zero: it must be longer than 0, e.g. 30s or 5m (leave it out for the default)", d.Raw)
	}
}

func (c *checker) rfc3339(path, s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		c.errorf(path, "%q is not an RFC 3339 time: write e.g. 2025-09-23T02:00:00Z or 2025-09-23T11:00:00+09:00", s)
		return time.Time{}, false
	}
	return t, true
}

func (c *checker) plan(p *Plan) {
	c.backups = p.Backups()
	c.backupNames = map[string]string{}
	c.backupSteps = map[string]bool{}
	c.revertsOf(p.Reverts)
	c.enum("change_request.type", p.ChangeRequest.Type, "a change type", changeTypes)
	c.enum("change_request.priority", p.ChangeRequest.Priority, "a priority", priorities)
	c.timeline(p.Timeline)
	c.risks(p.RisksAndMitigations)
	c.rollbackPlan(p.RollbackPlan)
	c.nothingUndone(p)
	c.approvals(p.Approval)
	c.approvalRules(p)
	c.preflight(p.Preflight)
	c.deploy(p.Deploy)
	c.monitor(p.Monitor)
	c.monitorStart(p.Monitor, p.Deploy)
	c.test(p.Test)
	c.rollbackVerify(p.RollbackPlan.Verify, p.Test) // verify.go
	c.report(p.Report)
	// The backups last, in the order they run: a name or a dir that
	// clashes is reported at the later one.
	for _, b := range c.backups {
		if b.Path == "preflight.backup" || c.backupSteps[parent(b.Path)] {
			c.backup(b.Path, b.Backup)
		}
	}
}

func (c *checker) timeline(t Timeline) {
	start, okStart := c.rfc3339("timeline.planned_start", t.PlannedStart)
	end, okEnd := c.rfc3339("timeline.planned_completion", t.PlannedCompletion)
	if okStart && okEnd && end.Before(start) {
		c.errorf("timeline.planned_completion", "planned completion %s is before planned start %s", t.PlannedCompletion, t.PlannedStart)
	}
	c.duration("timeline.estimated_duration", t.EstimatedDuration, false)
	if wend, ok := c.rfc3339("timeline.window_end", t.WindowEnd); ok && okStart && !wend.After(start) {
		c.errorf("timeline.window_end", "the change window ends (%s) before it opens (planned_start %s): window_end must be after planned_start", t.WindowEnd, t.PlannedStart)
	}
}

// approvalRules checks the approval timeout and that the approvers the plan
// names can approve at all: the requester cannot approve their own change
// and one person cannot fill two roles of the same run.
func (c *checker) approvalRules(p *Plan) {
	c.duration(approvalTimeoutPath, p.ApprovalTimeout, false)
	norm := func(s string) string { return strings.ToLower(strings.Join(strings.Fields(s), " ")) }
	byPerson := map[string]string{}
	for _, role := range sortedKeys(p.Approval) {
		name := norm(p.Approval[role].Approver)
		if name == "" {
			continue
		}
		path := joinKey(joinKey("approval", role), "approver")
		if name == norm(p.Requester.Name) {
			c.errorf(path, "%q is the requester (requester.name): the requester cannot approve their own change; name another approver for %s", p.Approval[role].Approver, role)
			continue
		}
		if other, ok := byPerson[name]; ok {
			c.errorf(path, "%q is also the approver of %s: one person cannot fill two roles of the same run; name another approver for %s", p.Approval[role].Approver, other, role)
			continue
		}
		byPerson[name] = role
	}
}

func (c *checker) risks(rs []Risk) {
	for i, r := range rs {
		path := joinIndex("risks_and_mitigations", i)
		if c.required(joinKey(path, "probability"), r.Probability, "probability ("+quoteList(probabilityWords)+")") {
			c.enum(joinKey(path, "probability"), r.Probability, "a probability", probabilityWords)
		}
		if c.required(joinKey(path, "impact"), r.Impact, "impact ("+quoteList(impactWords)+")") {
			c.enumText(joinKey(path, "impact"), r.Impact, "an impact", impactWords, "one of negligible, minor, moderate, major, severe (the risk matrix) or low, medium, high, critical (the template's words)")
		}
	}
}

func (c *checker) rollbackPlan(r RollbackPlan) {
	for i, t := range r.TriggerConditions {
		path := joinIndex("rollback_plan.trigger_conditions", i)
		if t.Text != "" || !c.set(path) {
			continue
		}
		if c.required(joinKey(path, "metric"), t.Metric, "metric (one of "+quoteList(KnownMetrics())+")") {
			c.metric(joinKey(path, "metric"), t.Metric)
		}
		if c.required(joinKey(path, "op"), t.Op, "op (one of "+quoteList(triggerOps)+")") {
			c.enum(joinKey(path, "op"), t.Op, "a comparison", triggerOps)
		}
		if !c.set(joinKey(path, "value")) {
			c.errorf(joinKey(path, "value"), "value is required: the number the metric is compared with")
		}
	}
	for i, s := range r.RollbackSteps {
		c.step(joinIndex("rollback_plan.rollback_steps", i), s, true)
	}
	c.duration("rollback_plan.estimated_rollback_time", r.EstimatedRollbackTime, false)
}

// nothingUndone warns about a plan whose failure would undo nothing
// (Plan.NothingUndoneOnFailure).
func (c *checker) nothingUndone(p *Plan) {
	if !p.NothingUndoneOnFailure() {
		return
	}
	todo := "the plan has no rollback steps"
	if n := len(p.RollbackPlan.DescribedSteps()); n > 0 {
		todo = fmt.Sprintf("its %d described step(s) become the operator's to-do", n)
	}
	c.warnf("rollback_plan.rollback_steps", "%s (%s); to have a failure undone, add a command, http, sql, wait or restore step", NoExecutableRollbackWarning, todo)
}

func (c *checker) metric(path, m string) {
	c.enum(path, m, "a metric the monitor measures", KnownMetrics())
}

// MonitoredMetrics are the metric names monitor.thresholds and
// monitor.auto_rollback.metrics may use: the seed's five, then the others
// the plan's sources report (Monitor.SourceMetrics, sorted).
func MonitoredMetrics(m Monitor) []string {
	out := KnownMetrics()
	for _, s := range m.SourceMetrics() {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// monitoredMetric checks a metric name of thresholds or auto_rollback
// against measured (MonitoredMetrics).
func (c *checker) monitoredMetric(path, m string, measured []string) {
	c.enumText(path, m, "a metric the monitor measures", measured,
		"one of "+quoteList(measured)+" (the seed's five and the metrics this plan's monitor.sources report)")
}

func (c *checker) approvals(a map[string]Approval) {
	for _, role := range sortedKeys(a) {
		path := joinKey("approval", role)
		ap := a[role]
		var written []string
		first := ""
		if ap.Status != "" {
			written = append(written, fmt.Sprintf("status %q", ap.Status))
			first = joinKey(path, "status")
		}
		if ap.Timestamp != "" {
			written = append(written, fmt.Sprintf("timestamp %q", ap.Timestamp))
			if first == "" {
				first = joinKey(path, "timestamp")
			}
		}
		if len(written) > 0 {
			c.warnf(first, "%s: never trusted: approvals exist only as `runbook approve` events, so %s is still required (approve with `runbook approve`)", strings.Join(written, " and "), role)
		}
	}
}

func (c *checker) preflight(p Preflight) {
	for i, ch := range p.Checks {
		path := joinIndex("preflight.checks", i)
		c.duration(joinKey(path, "timeout"), ch.Timeout, false)
		switch c.oneOf(path, "a check", checkKinds) {
		case "http":
			h, hp := ch.HTTP, joinKey(path, "http")
			c.httpURL(joinKey(hp, "url"), h.URL, true)
			c.method(joinKey(hp, "method"), h.Method)
			c.status(joinKey(hp, "expect_status"), h.ExpectStatus)
			c.nonNegative(joinKey(hp, "max_ms"), float64(h.MaxMS), "max_ms")
			c.headersEnv(joinKey(hp, "headers_env"), h.HeadersEnv)
		case "tcp":
			tp := joinKey(path, "tcp")
			if c.required(joinKey(tp, "address"), ch.TCP.Address, "address (host:port)") {
				c.hostPort(joinKey(tp, "address"), ch.TCP.Address, "TCP")
			}
		case "env":
			ep := joinKey(path, "env")
			if len(ch.Env.Required) == 0 {
				c.errorf(joinKey(ep, "required"), "required must list at least one environment variable name")
			}
			for j, name := range ch.Env.Required {
				c.env(joinIndex(joinKey(ep, "required"), j), name)
			}
		case "command":
			c.command(joinKey(path, "command"), ch.Command)
		case "postgres":
			c.env(joinKey(path, "postgres.dsn_env"), ch.Postgres.DSNEnv)
		case "redis":
			rp := joinKey(path, "redis")
			switch {
			case ch.Redis.Address == "" && ch.Redis.AddressEnv == "":
				c.errorf(rp, "a redis check needs address (host:port) or address_env (an environment variable name)")
			case ch.Redis.Address != "" && ch.Redis.AddressEnv != "":
				c.errorf(rp, "a redis check takes address or address_env, not both")
			case ch.Redis.Address != "":
				c.hostPort(joinKey(rp, "address"), ch.Redis.Address, "Redis")
			default:
				c.env(joinKey(rp, "address_env"), ch.Redis.AddressEnv)
			}
			if c.set(joinKey(rp, "password_env")) {
				c.env(joinKey(rp, "password_env"), ch.Redis.PasswordEnv)
			}
		case "nats":
			np := joinKey(path, "nats")
			switch {
			case ch.NATS.URL != "" && ch.NATS.URLEnv != "":
				c.errorf(np, "a nats check takes url or url_env, not both")
			case ch.NATS.URLEnv != "":
				c.env(joinKey(np, "url_env"), ch.NATS.URLEnv)
			default:
				c.natsURL(joinKey(np, "url"), ch.NATS.URL)
			}
		case "resources":
			rp := joinKey(path, "resources")
			for _, f := range []struct {
				name string
				v    float64
			}{{"cpu_percent", ch.Resources.CPUPercent}, {"memory_percent", ch.Resources.MemoryPercent}, {"disk_percent", ch.Resources.DiskPercent}} {
				if c.set(joinKey(rp, f.name)) && (f.v <= 0 || f.v > 100) {
					c.errorf(joinKey(rp, f.name), "%s must be a percentage above 0 and at most 100", f.name)
				}
			}
		case "file":
			c.required(joinKey(path, "file.path"), ch.File.Path, "path (the file that must exist)")
		}
	}
}

// BackupMetadataFile is the seed's metadata file in every backup directory.
const BackupMetadataFile = "backup_metadata.json"

// backup checks a backup (preflight.backup or a step's) at path: its
// steps, that no two of the plan's backups give a file the same name in
// the run's one backup directory, and that they set one dir.
func (c *checker) backup(path string, b *Backup) {
	if b.Dir != "" {
		switch {
		case c.backupDir == "":
			c.backupDir, c.backupDirPath = b.Dir, joinKey(path, "dir")
		case b.Dir != c.backupDir:
			c.errorf(joinKey(path, "dir"), "%q is not the dir %s sets (%q): a run has one backup directory, which all its backups share; write the same dir here or leave it out", b.Dir, c.backupDirPath, c.backupDir)
		}
	}
	if path != "preflight.backup" && len(b.Steps) == 0 && !c.skip(joinKey(path, "steps")) {
		c.errorf(joinKey(path, "steps"), "a backup step needs steps: what to back up now, as in preflight.backup, e.g. steps: [{files: [/etc/nginx/nginx.conf]}, {name: database, command: {shell: 'pg_dump mydb | gzip > \"$BACKUP_DIR/database.sql.gz\"'}}]")
	}
	name := func(path, n, from, what string) {
		switch {
		case n == "" || n == "." || n == "..":
			c.errorf(path, "%q names no file: a file in the backup directory needs a name", from)
		case n == BackupMetadataFile:
			c.errorf(path, "%q would be saved as %s, the backup's own metadata file: save it under another name with a command step", from, BackupMetadataFile)
		case c.backupNames[n] != "":
			c.errorf(path, "%q would be saved as %s, which is already the name of %s: the run's backups share one directory, where two files cannot share a name; save one of them under another name with a command step", from, n, c.backupNames[n])
		default:
			c.backupNames[n] = what
		}
	}
	for i, s := range b.Steps {
		path := joinIndex(joinKey(path, "steps"), i)
		c.duration(joinKey(path, "timeout"), s.Timeout, false)
		switch c.oneOf(path, "a backup step", backupStepKinds) {
		case "command":
			c.stepCommand(joinKey(path, "command"), s.Command)
			if s.Stdout != "" {
				sp := joinKey(path, "stdout")
				if strings.ContainsRune(s.Stdout, '/') {
					c.errorf(sp, "%q is not a file name: stdout names a file directly in the backup directory, without /, e.g. docker_state.txt", s.Stdout)
				} else {
					name(sp, s.Stdout, s.Stdout, fmt.Sprintf("the output of %s", path))
				}
			}
		case "files":
			if c.set(joinKey(path, "stdout")) {
				c.errorf(joinKey(path, "stdout"), "stdout belongs to a command step: a files step copies files as they are")
			}
			if len(s.Files) == 0 {
				c.errorf(joinKey(path, "files"), "files must list at least one file to copy")
			}
			for j, f := range s.Files {
				fp := joinIndex(joinKey(path, "files"), j)
				if c.required(fp, f, "a file path") {
					name(fp, BackupName(f), f, fmt.Sprintf("the copy of %q at %s", f, fp))
				}
			}
		}
	}
}

// restore checks a restore step: its file must be one the plan's backups
// produce (any name is possible when a backup step is a command).
func (c *checker) restore(path string, r *RestoreStep) {
	fp := joinKey(path, "file")
	if c.required(fp, r.File, "file (the file's name in the run's backup directory, e.g. nginx.conf)") {
		var known []string
		commands := false
		for _, b := range c.backups {
			known = append(known, b.Backup.KnownFiles()...)
			commands = commands || b.Backup.CommandSteps()
		}
		switch {
		case !validBackupName(r.File):
			c.errorf(fp, "%q is not a name in the backup directory: write it relative to that directory, without .. (e.g. nginx.conf)", r.File)
		case c.reverts != "":
			// A revert restores from the reverted run's backup, which
			// pre-flight and the step itself check when they run.
		case len(c.backups) == 0:
			c.errorf(fp, "restore of %q needs a backup to restore from, and the plan has none: add preflight.backup (or a backup step before the change) with a files step listing the file (e.g. files: [/etc/nginx/nginx.conf])", r.File)
		case !commands && !slices.Contains(known, r.File):
			have := "no file"
			if len(known) > 0 {
				have = strings.Join(known, ", ")
			}
			hint := ""
			for _, k := range known {
				if dist := editDistance(strings.ToLower(r.File), strings.ToLower(k)); dist <= 1 || (dist == 2 && len(r.File) >= 5) {
					hint = fmt.Sprintf(" (did you mean %q?)", k)
					break
				}
			}
			c.errorf(fp, "%q is not in the backup%s: the plan's backups save %s (files are saved by their base name)", r.File, hint, have)
		}
	}
	c.required(joinKey(path, "to"), r.To, "to (the path the file is restored to)")
}

// validBackupName: relative, clean, and not leaving the backup directory.
func validBackupName(n string) bool {
	if n == "" || strings.HasPrefix(n, "/") {
		return false
	}
	for _, part := range strings.Split(n, "/") {
		if part == "" || part == "." || part == ".." {
			return false
		}
	}
	return true
}

func (c *checker) command(path string, cmd *Command) {
	if cmd == nil {
		return
	}
	if cmd.Shell != "" {
		c.errorf(joinKey(path, "shell"), "shell is allowed only in deploy, rollback and finally steps and backup steps; here write the command as argv (it runs without a shell)")
		c.commandEnv(path, cmd)
		return
	}
	c.commandBody(path, cmd)
}

// stepCommand checks a step's command: exactly one of argv or shell.
func (c *checker) stepCommand(path string, cmd *Command) {
	if cmd == nil {
		return
	}
	switch {
	case len(cmd.Argv) > 0 && c.set(joinKey(path, "shell")):
		c.errorf(path, "a command takes argv or shell, not both: argv runs the program directly, shell runs your script with /bin/sh -c")
		return
	case c.set(joinKey(path, "shell")):
		if strings.TrimSpace(cmd.Shell) == "" {
			c.errorf(joinKey(path, "shell"), "shell must be a script, e.g. \"set -e; make deploy\"; run data reaches it as RUNBOOK_* environment variables")
		}
		c.commandEnv(path, cmd)
		return
	}
	c.commandBody(path, cmd)
}

func (c *checker) commandBody(path string, cmd *Command) {
	if len(cmd.Argv) == 0 {
		c.errorf(joinKey(path, "argv"), "argv must list the program and its arguments, e.g. [kubectl, rollout, status, deploy/api]; it runs without a shell")
	} else if cmd.Argv[0] == "" {
		c.errorf(joinIndex(joinKey(path, "argv"), 0), "argv[0] must name the program to run")
	}
	c.commandEnv(path, cmd)
}

func (c *checker) commandEnv(path string, cmd *Command) {
	for _, k := range sortedKeys(cmd.Env) {
		if !envName.MatchString(k) {
			c.errorf(joinKey(joinKey(path, "env"), k), "%q is not an environment variable name: use capitals, digits and _ ([A-Z_][A-Z0-9_]*)", k)
		}
	}
	if cmd.ExpectExit < 0 || cmd.ExpectExit > 255 {
		c.errorf(joinKey(path, "expect_exit"), "expect_exit %d is not an exit code: use 0..255", cmd.ExpectExit)
	}
}

// step checks one deploy, finally or rollback step; text steps are allowed
// only in rollback_steps.
func (c *checker) step(path string, s Step, textOK bool) {
	if c.skip(path) {
		return
	}
	if s.Text != "" {
		if !textOK {
			c.errorf(path, "a step here must be a mapping with exactly one of %s; a text step (a described manual step) is allowed only in rollback_plan.rollback_steps", stepKindsText(false))
		}
		return
	}
	c.duration(joinKey(path, "timeout"), s.Timeout, false)
	if s.Retries < 0 {
		c.errorf(joinKey(path, "retries"), "retries must be 0 or more")
	}
	what := "a step"
	if textOK {
		what = "a rollback step"
	}
	c.duration(joinKey(path, "retry_delay"), s.RetryDelay, false)
	switch c.oneOfText(path, what, stepKinds, stepKindsText(textOK)) {
	case "command":
		c.stepCommand(joinKey(path, "command"), s.Command)
	case "sql":
		c.sql(joinKey(path, "sql"), s.SQL)
	case "http":
		hp := joinKey(path, "http")
		c.httpURL(joinKey(hp, "url"), s.HTTP.URL, true)
		c.method(joinKey(hp, "method"), s.HTTP.Method)
		c.responseExpect(hp, s.HTTP.ExpectStatus, s.HTTP.Expect)
		if s.HTTP.Body != "" && s.HTTP.JSON != nil {
			c.errorf(hp, "an http step takes body or json, not both")
		}
		c.headersEnv(joinKey(hp, "headers_env"), s.HTTP.HeadersEnv)
	case "restore":
		c.restore(joinKey(path, "restore"), s.Restore)
	case "backup":
		c.backupSteps[path] = true // checked with the plan's other backups (plan)
	case "wait":
		wp := joinKey(path, "wait.duration")
		up := joinKey(path, "wait.until")
		switch {
		case c.set(wp) && c.set(up):
			c.errorf(joinKey(path, "wait"), "a wait takes duration or until, not both")
		case c.set(up):
			c.waitUntil(up, s.Wait.Until)
		case !c.set(wp):
			c.errorf(wp, "wait needs a duration, e.g. {duration: 30s}, or until: {url: ...} to wait for an HTTP check")
		default:
			c.duration(wp, s.Wait.Duration, false)
		}
	}
}

// sql checks an sql step: a DSN variable and exactly one of file or
// statements.
func (c *checker) sql(path string, q *SQLStep) {
	if q == nil {
		return
	}
	c.env(joinKey(path, "dsn_env"), q.DSNEnv)
	fileSet, stmtSet := c.set(joinKey(path, "file")), c.set(joinKey(path, "statements"))
	switch {
	case fileSet && stmtSet:
		c.errorf(path, "an sql step takes file or statements, not both")
	case fileSet:
		c.required(joinKey(path, "file"), q.File, "file (a .sql file run in one transaction)")
	case stmtSet:
		if q.IfExists {
			c.errorf(joinKey(path, "if_exists"), "if_exists applies to file (run the file when it exists), not to statements")
		}
		if len(q.Statements) == 0 {
			c.errorf(joinKey(path, "statements"), "statements must list at least one SQL statement")
		}
		for i, st := range q.Statements {
			if strings.TrimSpace(st) == "" {
				c.errorf(joinIndex(joinKey(path, "statements"), i), "a statement must not be empty")
			}
		}
	default:
		c.errorf(path, "an sql step needs file (a .sql file) or statements (a list), run in one transaction")
	}
}

// waitUntil checks a wait's HTTP condition.
func (c *checker) waitUntil(path string, u *WaitUntil) {
	if u == nil {
		c.errorf(path, "until needs url, e.g. {url: https://api.example.com/health}")
		return
	}
	c.httpURL(joinKey(path, "url"), u.URL, true)
	c.responseExpect(path, u.ExpectStatus, u.Expect)
	c.duration(joinKey(path, "interval"), u.Interval, false)
	c.duration(joinKey(path, "timeout"), u.Timeout, false)
	if u.Successes < 0 || u.Successes > 100 {
		c.errorf(joinKey(path, "successes"), "successes is how many checks in a row must pass: 1 (the default) to 100, not %d", u.Successes)
	}
}

func (c *checker) deploy(d Deploy) {
	if len(d.Steps) == 0 {
		c.warnf("deploy.steps", "nothing executable: the plan has no deploy steps, so a run only checks, watches and reports; add deploy.steps (%s) to change anything", stepKindsText(false))
	}
	for i, s := range d.Steps {
		// A revert's deploy steps are the reverted run's rollback steps:
		// its described ones among them (revert.go).
		c.step(joinIndex("deploy.steps", i), s, c.reverts != "")
	}
	for i, h := range d.Health {
		path := joinIndex("deploy.health", i)
		c.httpURL(joinKey(path, "url"), h.URL, true)
		if c.set(joinKey(path, "attempts")) && h.Attempts < 1 {
			c.errorf(joinKey(path, "attempts"), "attempts must be at least 1 (default 10)")
		}
		c.duration(joinKey(path, "interval"), h.Interval, false)
		c.duration(joinKey(path, "initial_delay"), h.InitialDelay, true)
		c.duration(joinKey(path, "timeout"), h.Timeout, false)
		c.responseExpect(path, h.ExpectStatus, h.Expect)
		c.headersEnv(joinKey(path, "headers_env"), h.HeadersEnv)
	}
	for i, s := range d.Finally {
		c.step(joinIndex("deploy.finally", i), s, false)
	}
}

func (c *checker) monitor(m Monitor) {
	c.duration("monitor.window", m.Window, false)
	c.duration("monitor.interval", m.Interval, false)
	if (m.Window.IsSet() || m.Interval.IsSet()) && m.EffectiveWindow() > 0 && m.EffectiveInterval() > m.EffectiveWindow() {
		c.errorf("monitor.interval", "interval %s is longer than the window %s: the monitor would never sample; make the interval shorter than the window", FormatDuration(m.EffectiveInterval()), FormatDuration(m.EffectiveWindow()))
	}
	c.sources(m.Sources)
	measured := MonitoredMetrics(m)
	for _, k := range sortedKeys(m.Thresholds) {
		path := joinKey("monitor.thresholds", k)
		c.monitoredMetric(path, k, measured)
		c.nonNegative(path, m.Thresholds[k], "a threshold")
	}
	if a := m.AutoRollback; a != nil {
		for i, name := range a.Metrics {
			c.monitoredMetric(joinIndex("monitor.auto_rollback.metrics", i), name, measured)
		}
		if c.set("monitor.auto_rollback.factor") && a.Factor < 1 {
			c.errorf("monitor.auto_rollback.factor", "factor must be at least 1: 1.5 rolls back when a metric passes 150 %% of its threshold")
		}
	}
	c.monitorGates(m)
}

func (c *checker) request(path string, r Request) {
	c.httpURL(joinKey(path, "url"), r.URL, true)
	c.method(joinKey(path, "method"), r.Method)
	if r.Body != "" && r.JSON != nil {
		c.errorf(path, "a request takes body or json, not both")
	}
	for _, k := range sortedKeys(r.Headers) {
		if !headerName.MatchString(k) {
			c.errorf(joinKey(joinKey(path, "headers"), k), "%q is not an HTTP header name: use letters, digits and - (e.g. Content-Type)", k)
		}
	}
	c.headersEnv(joinKey(path, "headers_env"), r.HeadersEnv)
}

func (c *checker) test(t Test) {
	c.smokeTests(t) // smoke.go
	c.secretHosts(t)
	for _, st := range t.SmokeSteps() {
		c.requestSecretHost(joinKey(st.Path, "request"), st.Request, t)
	}
	if l := t.Load; l != nil {
		for i, r := range l.Requests {
			c.requestSecretHost(joinIndex("test.load.requests", i), r, t)
		}
		if c.set("test.load.vus") && l.VUs <= 0 {
			c.errorf("test.load.vus", "vus must be more than 0 virtual users (default 50)")
		}
		c.duration("test.load.duration", l.Duration, false)
		c.duration("test.load.think_time", l.ThinkTime, true)
		if len(l.Requests) == 0 {
			c.errorf("test.load.requests", "a load test needs requests: the list of requests one virtual user sends per iteration")
		}
		for i, r := range l.Requests {
			c.request(joinIndex("test.load.requests", i), r)
		}
		if c.set("test.load.gates.p95_ms") && l.Gates.P95MS <= 0 {
			c.errorf("test.load.gates.p95_ms", "p95_ms must be more than 0 milliseconds (default 2100)")
		}
		if l.Gates.ErrorRate < 0 || l.Gates.ErrorRate > 1 {
			c.errorf("test.load.gates.error_rate", "error_rate is a fraction from 0 to 1 (0.01 = 1 %%)")
		}
		c.loadModel(l)
	}
}

func (c *checker) report(r Report) {
	for i, n := range r.Notify {
		path := joinIndex("report.notify", i)
		switch c.oneOf(path, "a notification", notifyKinds) {
		case "slack":
			c.env(joinKey(path, "slack.webhook_env"), n.Slack.WebhookEnv)
			c.enum(joinKey(path, "slack.when"), n.Slack.When, "a notify condition", notifyWhens)
		case "webhook":
			c.httpURL(joinKey(path, "webhook.url"), n.Webhook.URL, true)
			c.enum(joinKey(path, "webhook.when"), n.Webhook.When, "a notify condition", notifyWhens)
		case "email":
			ep := joinKey(path, "email")
			c.env(joinKey(ep, "smtp_env"), n.Email.SMTPEnv)
			if len(n.Email.To) == 0 {
				c.errorf(joinKey(ep, "to"), "to must list at least one address")
			}
			for j, a := range n.Email.To {
				if at := strings.LastIndexByte(a, '@'); at <= 0 || at == len(a)-1 {
					c.errorf(joinIndex(joinKey(ep, "to"), j), "%q is not an e-mail address: write name@example.com", a)
				}
			}
			c.enum(joinKey(ep, "when"), n.Email.When, "a notify condition", notifyWhens)
			if slices.Contains(n.On, NotifyOnStarted) {
				c.errorf(joinKey(path, "on"), "e-mail carries the report only: write on: [final] (or leave on out) and tell %q through slack or webhook", NotifyOnStarted)
			}
		}
		if c.set(joinKey(path, "on")) && len(n.On) == 0 {
			c.errorf(joinKey(path, "on"), "on must list started, final or both (leave it out for the final report only)")
		}
		for j, on := range n.On {
			c.enum(joinIndex(joinKey(path, "on"), j), on, "a notification moment", notifyOns)
		}
	}
}

// sortedKeys lists m's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
