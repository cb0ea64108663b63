package plan

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The metrics the monitor measures, by the seed's names.
const (
	MetricP95               = "api_response_time_p95" // milliseconds
	MetricErrorRate         = "error_rate"            // fraction, 0.01 = 1 %
	MetricCPU               = "cpu_utilization"       // percent
	MetricMemory            = "memory_usage"          // percent
	MetricActiveConnections = "active_connections"
)

// KnownMetrics lists the metric names thresholds, auto_rollback and
// structured trigger conditions may use.
func KnownMetrics() []string {
	return []string{MetricP95, MetricErrorRate, MetricCPU, MetricMemory, MetricActiveConnections}
}

// DefaultThresholds are the seed's thresholds.
func DefaultThresholds() map[string]float64 {
	return map[string]float64{
		MetricP95:               2100,
		MetricErrorRate:         0.01,
		MetricCPU:               80,
		MetricMemory:            85,
		MetricActiveConnections: 1000,
	}
}

// Defaults of the executable parts (the seed's numbers where it has them).
const (
	DefaultCheckTimeout        = 5 * time.Second
	DefaultStepTimeout         = 5 * time.Minute
	DefaultHealthAttempts      = 10
	DefaultHealthInterval      = 10 * time.Second
	DefaultHealthInitialDelay  = 30 * time.Second
	DefaultHealthTimeout       = 5 * time.Second
	DefaultMonitorWindow       = 30 * time.Minute
	DefaultMonitorInterval     = 30 * time.Second
	DefaultProbeRequests       = 10
	DefaultAutoRollbackFactor  = 1.5
	DefaultSmokeTimeout        = 10 * time.Second
	DefaultLoadVUs             = 50
	DefaultLoadDuration        = 5 * time.Minute
	DefaultLoadThinkTime       = 1 * time.Second
	DefaultLoadP95MS           = 2100
	DefaultLoadErrorRate       = 0.01
	DefaultResourcesCPU        = 80
	DefaultResourcesMemory     = 85
	DefaultResourcesDisk       = 90
	DefaultResourcesDiskPath   = "/"
	DefaultPostgresQuery       = "SELECT version()"
	DefaultCheckHTTPMethod     = "GET"
	DefaultStepHTTPMethod      = "POST"
	DefaultRequestMethod       = "GET"
	DefaultSmokeType           = "smoke"
	DefaultAutoRollbackMetric1 = MetricP95
	DefaultAutoRollbackMetric2 = MetricErrorRate
	DefaultBackupDir           = "backups"
	DefaultBackupStepTimeout   = 30 * time.Minute
)

// Notification moments (report.notify[].on).
const (
	NotifyOnStarted = "started"
	NotifyOnFinal   = "final"
)

// Notify conditions.
const (
	NotifyAlways  = "always"
	NotifyFailure = "failure"
	NotifySuccess = "success"
)

// StatusOK reports whether got satisfies expect; expect 0 means any 2xx.
func StatusOK(expect, got int) bool {
	if expect == 0 {
		return got >= 200 && got < 300
	}
	return got == expect
}

// --- checks ---

// Kind is the check's kind: http, tcp, env, command, postgres, redis, nats,
// resources or file ("" when none is set).
func (c Check) Kind() string {
	switch {
	case c.HTTP != nil:
		return "http"
	case c.TCP != nil:
		return "tcp"
	case c.Env != nil:
		return "env"
	case c.Command != nil:
		return "command"
	case c.Postgres != nil:
		return "postgres"
	case c.Redis != nil:
		return "redis"
	case c.NATS != nil:
		return "nats"
	case c.Resources != nil:
		return "resources"
	case c.File != nil:
		return "file"
	}
	return ""
}

// IsBlocking reports whether a failing check fails the pre-flight: blocking
// unless the plan says otherwise, except resources checks, which only warn
// by default.
func (c Check) IsBlocking() bool {
	if c.Blocking != nil {
		return *c.Blocking
	}
	return c.Kind() != "resources"
}

// EffectiveTimeout is the check's timeout, default 5s.
func (c Check) EffectiveTimeout() time.Duration { return c.Timeout.Or(DefaultCheckTimeout) }

// Label names the check: its name, or its kind and index.
func (c Check) Label(i int) string {
	if c.Name != "" {
		return c.Name
	}
	return fmt.Sprintf("%s check %d", c.Kind(), i+1)
}

// EffectiveMethod is the check's method, default GET.
func (h HTTPCheck) EffectiveMethod() string { return or(h.Method, DefaultCheckHTTPMethod) }

// EffectiveQuery is the query a postgres check runs, default SELECT version().
func (p PostgresCheck) EffectiveQuery() string { return or(p.Query, DefaultPostgresQuery) }

// EffectiveCPU, EffectiveMemory and EffectiveDisk are the limits in percent
// (defaults 80, 85, 90); EffectiveDiskPath defaults to /.
func (r ResourcesCheck) EffectiveCPU() float64 { return orF(r.CPUPercent, DefaultResourcesCPU) }
func (r ResourcesCheck) EffectiveMemory() float64 {
	return orF(r.MemoryPercent, DefaultResourcesMemory)
}
func (r ResourcesCheck) EffectiveDisk() float64 { return orF(r.DiskPercent, DefaultResourcesDisk) }
func (r ResourcesCheck) EffectiveDiskPath() string {
	return or(r.DiskPath, DefaultResourcesDiskPath)
}

// Kind is command or files ("" when none is set).
func (b BackupStep) Kind() string {
	switch {
	case b.Command != nil:
		return "command"
	case len(b.Files) > 0:
		return "files"
	}
	return ""
}

// EffectiveTimeout is the backup step's timeout, default 30m (a database
// dump takes a while).
func (b BackupStep) EffectiveTimeout() time.Duration { return b.Timeout.Or(DefaultBackupStepTimeout) }

// Label names the backup step: its name, or its kind and index.
func (b BackupStep) Label(i int) string {
	if b.Name != "" {
		return b.Name
	}
	return fmt.Sprintf("%s backup step %d", b.Kind(), i+1)
}

// EffectiveDir is where the run's backup directory is made, default
// "backups" (relative to the working directory of the service that makes
// it). A plan's backups share one directory: see Plan.BackupDir.
func (b Backup) EffectiveDir() string { return or(b.Dir, DefaultBackupDir) }

// PlacedBackup is one of the plan's backups and where the plan writes it:
// "preflight.backup" or a step's "deploy.steps[2].backup".
type PlacedBackup struct {
	Path   string
	Backup *Backup
}

// Backups are the plan's backups in plan order: preflight.backup, then the
// backup steps of deploy.steps, deploy.finally and
// rollback_plan.rollback_steps. They all write into the run's one backup
// directory.
func (p *Plan) Backups() []PlacedBackup {
	var out []PlacedBackup
	if p.Preflight.Backup != nil {
		out = append(out, PlacedBackup{"preflight.backup", p.Preflight.Backup})
	}
	for _, l := range []struct {
		path  string
		steps []Step
	}{{"deploy.steps", p.Deploy.Steps}, {"deploy.finally", p.Deploy.Finally}, {rollbackStepsPath, p.RollbackPlan.RollbackSteps}} {
		for i, s := range l.steps {
			if s.Backup != nil {
				out = append(out, PlacedBackup{joinKey(joinIndex(l.path, i), "backup"), s.Backup})
			}
		}
	}
	return out
}

// BackupDir is where the run's backup directory is made: the first dir
// the plan's backups set (validate refuses two different ones), default
// "backups".
func (p *Plan) BackupDir() string {
	for _, b := range p.Backups() {
		if b.Backup.Dir != "" {
			return b.Backup.Dir
		}
	}
	return DefaultBackupDir
}

// StepPath is where the plan writes step index of the deployer's list
// (a StepEvent's list: steps, finally, rollback), e.g. "deploy.steps[2]".
func StepPath(list string, index int) string {
	path := map[string]string{"steps": "deploy.steps", "finally": "deploy.finally", "rollback": rollbackStepsPath}[list]
	if path == "" {
		path = list
	}
	return joinIndex(path, index)
}

// CommandSteps reports whether a backup step is a command, which may write
// any file into the backup directory.
func (b Backup) CommandSteps() bool {
	for _, s := range b.Steps {
		if s.Command != nil {
			return true
		}
	}
	return false
}

// KnownFiles are the names the backup's files steps (base names) and
// command steps' stdout files give their files in the backup directory, in
// plan order.
func (b Backup) KnownFiles() []string {
	var out []string
	for _, s := range b.Steps {
		if s.Command != nil && s.Stdout != "" {
			out = append(out, s.Stdout)
		}
		for _, f := range s.Files {
			out = append(out, BackupName(f))
		}
	}
	return out
}

// BackupName is the name a files step gives path in the backup directory:
// its base name, as the seed's `cp "$file" "$BACKUP_DIR/"`.
func BackupName(path string) string {
	path = strings.TrimRight(path, "/")
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// --- steps ---

// Kind is command, http, wait, restore, sql, backup, or manual for a text
// step ("" when empty).
func (s Step) Kind() string {
	switch {
	case s.Command != nil:
		return "command"
	case s.HTTP != nil:
		return "http"
	case s.Wait != nil:
		return "wait"
	case s.Restore != nil:
		return "restore"
	case s.SQL != nil:
		return "sql"
	case s.Backup != nil:
		return "backup"
	case s.Text != "":
		return "manual"
	}
	return ""
}

// Step retry backoff: RetryDelay (default 1s) before the first retry,
// doubled for each next one, at most DefaultStepRetryDelayCap.
const (
	DefaultStepRetryDelay    = time.Second
	DefaultStepRetryDelayCap = time.Minute
	DefaultWaitUntilInterval = 5 * time.Second
)

// EffectiveRetryDelay is the step's retry_delay, default 1s.
func (s Step) EffectiveRetryDelay() time.Duration { return s.RetryDelay.Or(DefaultStepRetryDelay) }

// EffectiveInterval is the wait's polling interval, default 5s.
func (u WaitUntil) EffectiveInterval() time.Duration { return u.Interval.Or(DefaultWaitUntilInterval) }

// EffectiveSuccesses is how many checks in a row must pass (default 1).
func (u WaitUntil) EffectiveSuccesses() int { return max(u.Successes, 1) }

// IsManual reports a described manual step (a text in rollback_steps):
// shown to people, never executed.
func (s Step) IsManual() bool { return s.Kind() == "manual" }

// SafeToRerun reports whether the step may run again after a crash cut it
// short: when the plan marks it idempotent, and always for a restore (a
// verified copy renamed into place gives the same result twice) and a
// backup (it is taken aside and joins the run's backup with its metadata,
// at once; one already taken is not taken again).
func (s Step) SafeToRerun() bool { return s.Idempotent || s.Restore != nil || s.Backup != nil }

// EffectiveTimeout is the step's timeout, default 5m; a backup step's
// default is the sum of its backup steps' timeouts (each 30m by default).
func (s Step) EffectiveTimeout() time.Duration {
	if s.Backup != nil && !s.Timeout.IsSet() {
		var sum time.Duration
		for _, b := range s.Backup.Steps {
			sum += b.EffectiveTimeout()
		}
		if sum > 0 {
			return sum
		}
	}
	return s.Timeout.Or(DefaultStepTimeout)
}

// Label names the step for logs and reports: its name, its text, or what it
// does.
func (s Step) Label() string {
	switch {
	case s.Name != "":
		return s.Name
	case s.Text != "":
		return s.Text
	case s.Command != nil && len(s.Command.Argv) > 0:
		return strings.Join(s.Command.Argv, " ")
	case s.Command != nil && s.Command.Shell != "":
		line, _, more := strings.Cut(strings.TrimSpace(s.Command.Shell), "\n")
		if more || len(line) > 60 {
			line = strings.TrimSpace(line[:min(len(line), 60)]) + " …"
		}
		return "sh -c " + line
	case s.HTTP != nil:
		return s.HTTP.EffectiveMethod() + " " + s.HTTP.URL
	case s.Wait != nil && s.Wait.Until != nil:
		return "wait until " + s.Wait.Until.URL
	case s.Wait != nil:
		return "wait " + s.Wait.Duration.String()
	case s.SQL != nil && s.SQL.File != "":
		return "sql " + s.SQL.File
	case s.SQL != nil:
		return fmt.Sprintf("sql (%d statements)", len(s.SQL.Statements))
	case s.Restore != nil:
		return "restore " + s.Restore.File + " to " + s.Restore.To
	case s.Backup != nil:
		names := make([]string, len(s.Backup.Steps))
		for i, b := range s.Backup.Steps {
			names[i] = b.Label(i)
		}
		return "backup: " + strings.Join(names, ", ")
	}
	return "step"
}

// EffectiveMethod is the step's method, default POST.
func (h HTTPStep) EffectiveMethod() string { return or(h.Method, DefaultStepHTTPMethod) }

// EffectiveAttempts is the number of tries, default 10.
func (h HealthCheck) EffectiveAttempts() int {
	if h.Attempts > 0 {
		return h.Attempts
	}
	return DefaultHealthAttempts
}

// EffectiveInterval is the pause between tries, default 10s.
func (h HealthCheck) EffectiveInterval() time.Duration { return h.Interval.Or(DefaultHealthInterval) }

// EffectiveInitialDelay is the wait before the first try, default 30s; an
// explicit 0 means no wait.
func (h HealthCheck) EffectiveInitialDelay() time.Duration {
	return h.InitialDelay.Or(DefaultHealthInitialDelay)
}

// EffectiveTimeout is the timeout of one try, default 5s.
func (h HealthCheck) EffectiveTimeout() time.Duration { return h.Timeout.Or(DefaultHealthTimeout) }

// --- rollback ---

// IsText reports a condition written as text: shown, not watched.
func (t TriggerCondition) IsText() bool { return t.Text != "" }

// Holds reports whether value meets the structured condition (false for a
// text condition).
func (t TriggerCondition) Holds(value float64) bool {
	switch t.Op {
	case ">":
		return value > t.Value
	case ">=":
		return value >= t.Value
	case "<":
		return value < t.Value
	case "<=":
		return value <= t.Value
	}
	return false
}

func (t TriggerCondition) String() string {
	if t.Text != "" {
		return t.Text
	}
	return fmt.Sprintf("%s %s %s", t.Metric, t.Op, strconv.FormatFloat(t.Value, 'g', -1, 64))
}

// UnmarshalYAML accepts a text or {metric, op, value} for plain
// yaml.Unmarshal (Parse decodes with its own checks).
func (t *TriggerCondition) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err == nil {
		*t = TriggerCondition{Text: s}
		return nil
	}
	type plain TriggerCondition
	var p plain
	if err := unmarshal(&p); err != nil {
		return err
	}
	*t = TriggerCondition(p)
	return nil
}

// UnmarshalYAML accepts a text (a manual step) or a step mapping for plain
// yaml.Unmarshal (Parse decodes with its own checks).
func (s *Step) UnmarshalYAML(unmarshal func(any) error) error {
	var text string
	if err := unmarshal(&text); err == nil {
		*s = Step{Text: text}
		return nil
	}
	type plain Step
	var p plain
	if err := unmarshal(&p); err != nil {
		return err
	}
	*s = Step(p)
	return nil
}

// --- monitor ---

// EffectiveWindow is how long the monitor watches, default 30m.
func (m Monitor) EffectiveWindow() time.Duration { return m.Window.Or(DefaultMonitorWindow) }

// EffectiveInterval is the sampling interval, default 30s.
func (m Monitor) EffectiveInterval() time.Duration { return m.Interval.Or(DefaultMonitorInterval) }

// EffectiveThresholds are the seed's thresholds overridden by the plan's.
func (m Monitor) EffectiveThresholds() map[string]float64 {
	t := DefaultThresholds()
	for k, v := range m.Thresholds {
		t[k] = v
	}
	return t
}

// EffectiveMetrics are the metrics whose breach of factor × threshold rolls
// back: the plan's, default p95 and error rate (the seed's 150 % rule). An
// explicit empty list (metrics: []) turns auto-rollback off.
func (a *AutoRollback) EffectiveMetrics() []string {
	if a == nil || a.Metrics == nil {
		return []string{DefaultAutoRollbackMetric1, DefaultAutoRollbackMetric2}
	}
	return slices.Clone(a.Metrics)
}

// EffectiveFactor is the auto-rollback factor, default 1.5.
func (a *AutoRollback) EffectiveFactor() float64 {
	if a == nil || a.Factor == 0 {
		return DefaultAutoRollbackFactor
	}
	return a.Factor
}

// Kind is http_probe, prometheus_scrape, prometheus_query, system or
// alertmanager: the first set ("" when none is set).
func (s Source) Kind() string {
	switch {
	case s.HTTPProbe != nil:
		return "http_probe"
	case s.PrometheusScrape != nil:
		return "prometheus_scrape"
	case s.PrometheusQuery != nil:
		return "prometheus_query"
	case s.System != nil:
		return "system"
	case s.Alertmanager != nil:
		return "alertmanager"
	}
	return ""
}

// EffectiveMethod is the probe's method, default GET.
func (h HTTPProbe) EffectiveMethod() string { return or(h.Method, DefaultRequestMethod) }

// EffectiveRequests is the number of probes per interval, default 10.
func (h HTTPProbe) EffectiveRequests() int {
	if h.Requests > 0 {
		return h.Requests
	}
	return DefaultProbeRequests
}

// EffectiveRequestsCounter is the requests counter, default the latency
// histogram's _count.
func (p PrometheusScrape) EffectiveRequestsCounter() string {
	if p.RequestsCounter != "" || p.LatencyHistogram == "" {
		return p.RequestsCounter
	}
	return p.LatencyHistogram + "_count"
}

// --- tests ---

// RollbackOnFailureOr reports whether a failed test asks for a rollback:
// the plan's rollback_on_failure, true when unset.
func (t Test) RollbackOnFailureOr() bool {
	if t.RollbackOnFailure == nil {
		return true
	}
	return *t.RollbackOnFailure
}

// IsEmpty reports a plan without smoke or load tests.
func (t Test) IsEmpty() bool { return len(t.SmokeSteps()) == 0 && t.Load == nil }

// EffectiveType is smoke (default), regression or performance.
func (s SmokeTest) EffectiveType() string { return or(s.Type, DefaultSmokeType) }

// EffectiveTimeout is the test's timeout, default 10s.
func (s SmokeTest) EffectiveTimeout() time.Duration { return s.Timeout.Or(DefaultSmokeTimeout) }

// EffectiveMethod is the request's method, default GET.
func (r Request) EffectiveMethod() string { return or(r.Method, DefaultRequestMethod) }

// EffectiveVUs is the number of virtual users, default 50.
func (l *LoadTest) EffectiveVUs() int {
	if l == nil || l.VUs <= 0 {
		return DefaultLoadVUs
	}
	return l.VUs
}

// EffectiveDuration is how long the load runs, default 5m.
func (l *LoadTest) EffectiveDuration() time.Duration {
	if l == nil {
		return DefaultLoadDuration
	}
	return l.Duration.Or(DefaultLoadDuration)
}

// EffectiveThinkTime is the pause per iteration, default 1s; 0 written
// means none.
func (l *LoadTest) EffectiveThinkTime() time.Duration {
	if l == nil {
		return DefaultLoadThinkTime
	}
	return l.ThinkTime.Or(DefaultLoadThinkTime)
}

// EffectiveGates are the pass gates: p95 ≤ 2100 ms and error rate ≤ 0.01
// unless the plan says otherwise (error_rate: 0 written means no errors
// allowed).
func (l *LoadTest) EffectiveGates() LoadGates {
	g := LoadGates{P95MS: DefaultLoadP95MS, ErrorRate: DefaultLoadErrorRate}
	if l == nil {
		return g
	}
	if l.Gates.P95MS > 0 {
		g.P95MS = l.Gates.P95MS
	}
	if l.Gates.ErrorRate > 0 || l.Gates.errorRateSet {
		g.ErrorRate = l.Gates.ErrorRate
	}
	return g
}

// --- report ---

// Kind is slack, webhook or email ("" when none is set).
func (n Notify) Kind() string {
	switch {
	case n.Slack != nil:
		return "slack"
	case n.Webhook != nil:
		return "webhook"
	case n.Email != nil:
		return "email"
	}
	return ""
}

// Notifies reports whether the destination is told at moment on
// (NotifyOnStarted, NotifyOnFinal); without `on`, only the final report.
func (n Notify) Notifies(on string) bool {
	if len(n.On) == 0 {
		return on == NotifyOnFinal
	}
	return slices.Contains(n.On, on)
}

// When is the notification's condition: always (default), failure or success.
func (n Notify) When() string {
	var w string
	switch {
	case n.Slack != nil:
		w = n.Slack.When
	case n.Webhook != nil:
		w = n.Webhook.When
	case n.Email != nil:
		w = n.Email.When
	}
	return or(w, NotifyAlways)
}

// ShouldSend reports whether to notify for a run that succeeded or not.
func (n Notify) ShouldSend(succeeded bool) bool {
	switch n.When() {
	case NotifyFailure:
		return !succeeded
	case NotifySuccess:
		return succeeded
	}
	return true
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orF(v, def float64) float64 {
	if v == 0 {
		return def
	}
	return v
}
