// Package plan is the change plan: the seed's change_plan_template.yml, kept
// field for field, plus the executable parts (preflight, deploy, monitor,
// test, report). It is pure: no NATS, no database. Every service parses the
// plan text carried by change.requested with Parse.
package plan

// Plan is one change plan.
type Plan struct {
	// --- the seed's template, unchanged ---
	ChangeRequest       ChangeRequest       `yaml:"change_request"`
	Requester           Requester           `yaml:"requester"`
	Description         Description         `yaml:"description"`
	Scope               Scope               `yaml:"scope"`
	Timeline            Timeline            `yaml:"timeline"`
	RisksAndMitigations []Risk              `yaml:"risks_and_mitigations"`
	RollbackPlan        RollbackPlan        `yaml:"rollback_plan"`
	Approval            map[string]Approval `yaml:"approval"`
	// ApprovalTimeout is approval.timeout, a reserved key of the approval
	// section (not a role): how long after pre-flight passed the required
	// approvals may take; a run still missing one then expires. 0: no limit.
	ApprovalTimeout Duration `yaml:"-"`
	// --- executable parts ---
	Preflight Preflight `yaml:"preflight"`
	Deploy    Deploy    `yaml:"deploy"`
	Monitor   Monitor   `yaml:"monitor"`
	Test      Test      `yaml:"test"`
	Report    Report    `yaml:"report"`
	// Reverts, in the plan of a revert run (`runbook revert`; revert.go),
	// names the run it undoes: restore steps and RUNBOOK_BACKUP_DIR read
	// that run's backup, and its deploy.steps may hold described (manual)
	// steps, copied from that run's rollback_steps.
	Reverts *Reverts `yaml:"reverts"`
}

// Reverts names the run a revert run undoes (see Revert).
type Reverts struct {
	// Run is the reverted run's id; it ended SUCCESS.
	Run string `yaml:"run"`
	// ChangeID is the reverted run's change id.
	ChangeID string `yaml:"change_id"`
	// Reason is why it is reverted (runbook revert --reason).
	Reason string `yaml:"reason"`
}

type ChangeRequest struct {
	ID       string `yaml:"id"`
	Title    string `yaml:"title"`
	Type     string `yaml:"type"`     // maintenance, bugfix, enhancement, emergency
	Priority string `yaml:"priority"` // low, medium, high, critical
}

type Requester struct {
	Name    string `yaml:"name"`
	Role    string `yaml:"role"`
	Contact string `yaml:"contact"`
}

type Description struct {
	Summary               string `yaml:"summary"`
	BusinessJustification string `yaml:"business_justification"`
	TechnicalDetails      string `yaml:"technical_details"`
}

type Scope struct {
	SystemsAffected    []string `yaml:"systems_affected"`
	ComponentsModified []string `yaml:"components_modified"`
	DataChanges        []string `yaml:"data_changes"`
}

type Timeline struct {
	PlannedStart      string   `yaml:"planned_start"`      // RFC 3339
	EstimatedDuration Duration `yaml:"estimated_duration"` // "2 hours"
	PlannedCompletion string   `yaml:"planned_completion"` // RFC 3339
	Milestones        []string `yaml:"milestones"`
	// WindowEnd (RFC 3339) ends the change window: a run that has not
	// started its deploy by then expires. PlannedStart opens the window
	// (an emergency change ignores it); a started deploy is not cut short.
	WindowEnd string `yaml:"window_end"`
}

// Risk is one entry of risks_and_mitigations. Probability and impact take
// the template's words (low/medium/high) or the matrix's
// (very_low..very_high, negligible..severe).
type Risk struct {
	ID          string `yaml:"id"`
	Risk        string `yaml:"risk"`
	Probability string `yaml:"probability"`
	Impact      string `yaml:"impact"`
	Mitigation  string `yaml:"mitigation"`
	Owner       string `yaml:"owner"`
}

type RollbackPlan struct {
	// Text conditions are shown to people; structured ones feed the monitor.
	TriggerConditions []TriggerCondition `yaml:"trigger_conditions"`
	// Text steps are described manual steps; objects run. The seed writes
	// them as one numbered text ("1. ... 2. ..."), which is split into steps.
	RollbackSteps         []Step   `yaml:"rollback_steps"`
	EstimatedRollbackTime Duration `yaml:"estimated_rollback_time"`
	// Verify names suites of test.suites that the tester re-runs once the
	// rollback's steps are done (the seed's rollback step "테스트 실행"):
	// all passed → ROLLED_BACK, any failed → ROLLBACK_FAILED (verify.go).
	Verify []string `yaml:"verify"`
}

// TriggerCondition is either Text or a structured metric rule.
type TriggerCondition struct {
	Text   string  `yaml:"-"`
	Metric string  `yaml:"metric"`
	Op     string  `yaml:"op"` // >, >=, <, <=
	Value  float64 `yaml:"value"`
}

// Approval is one role that must approve, with its named approver. Status
// and timestamp are accepted (the seed writes them) but never trusted:
// approvals exist only as events.
type Approval struct {
	Approver  string `yaml:"approver"`
	Status    string `yaml:"status"`
	Timestamp string `yaml:"timestamp"`
}

type Preflight struct {
	Checks []Check `yaml:"checks"`
	Backup *Backup `yaml:"backup"`
}

// Check is one pre-flight check: exactly one kind field is set.
type Check struct {
	Name     string   `yaml:"name"`
	Timeout  Duration `yaml:"timeout"`  // default 5s
	Blocking *bool    `yaml:"blocking"` // default true (resources: false)

	HTTP      *HTTPCheck      `yaml:"http"`
	TCP       *TCPCheck       `yaml:"tcp"`
	Env       *EnvCheck       `yaml:"env"`
	Command   *Command        `yaml:"command"`
	Postgres  *PostgresCheck  `yaml:"postgres"`
	Redis     *RedisCheck     `yaml:"redis"`
	NATS      *NATSCheck      `yaml:"nats"`
	Resources *ResourcesCheck `yaml:"resources"`
	File      *FileCheck      `yaml:"file"`
}

type HTTPCheck struct {
	URL          string            `yaml:"url"`
	Method       string            `yaml:"method"`        // default GET
	ExpectStatus int               `yaml:"expect_status"` // default: any 2xx
	BodyContains string            `yaml:"body_contains"`
	JSON         map[string]any    `yaml:"json"`        // top-level or dotted field → expected value
	MaxMS        int               `yaml:"max_ms"`      // latency bound
	HeadersEnv   map[string]string `yaml:"headers_env"` // header → env var name
}

type TCPCheck struct {
	Address string `yaml:"address"` // host:port
}

// EnvCheck passes when every Required variable is set and not empty; only
// SET / NOT SET is reported, never a value.
type EnvCheck struct {
	Required []string `yaml:"required"`
}

// Command runs argv directly (never through a shell). A deploy, rollback or
// finally step and a backup step may give Shell instead: the plan author's
// own script, run as /bin/sh -c <script>; run data still reaches it only as
// environment. Pre-flight checks take argv only.
type Command struct {
	Argv  []string          `yaml:"argv"`
	Shell string            `yaml:"shell"`
	Dir   string            `yaml:"dir"`
	Env   map[string]string `yaml:"env"`
	// ExpectExit is the exit code that means success (default 0).
	ExpectExit int `yaml:"expect_exit"`
}

// PostgresCheck connects with the DSN held by the environment variable
// DSNEnv (a postgres:// URL or key=value pairs; never written in the plan)
// and runs Query (default SELECT version()); its first row is the value.
type PostgresCheck struct {
	DSNEnv string `yaml:"dsn_env"`
	Query  string `yaml:"query"`
}

// RedisCheck sends PING (after AUTH when there is a password) to Address
// (host:port) or to the address held by AddressEnv: host:port or a
// redis:// / rediss:// URL, redis://[user]:password@host:port/db.
// PasswordEnv names the variable holding the password (it wins over a
// password in the URL).
type RedisCheck struct {
	Address     string `yaml:"address"`
	AddressEnv  string `yaml:"address_env"`
	PasswordEnv string `yaml:"password_env"`
}

// NATSCheck connects to URL, or to the URL held by URLEnv (for a URL with
// credentials, nats://user:password@host:4222), and reports the server's
// version.
type NATSCheck struct {
	URL    string `yaml:"url"`
	URLEnv string `yaml:"url_env"`
}

// ResourcesCheck compares this machine's CPU (two /proc/stat samples 200ms
// apart), memory ((MemTotal-MemAvailable)/MemTotal) and disk (statfs of
// DiskPath, as df's Use%) with the limits; over a limit is a warning unless
// the check says blocking: true.
type ResourcesCheck struct {
	CPUPercent    float64 `yaml:"cpu_percent"`    // default 80
	MemoryPercent float64 `yaml:"memory_percent"` // default 85
	DiskPercent   float64 `yaml:"disk_percent"`   // default 90
	DiskPath      string  `yaml:"disk_path"`      // default /
}

// FileCheck passes when Path exists and is readable: a file whose first
// byte can be read, a directory that can be listed, or a special file
// (device, pipe, socket) that access(2) says is readable.
type FileCheck struct {
	Path string `yaml:"path"`
}

// Backup is a backup of the run: preflight.backup (taken at the end of
// pre-flight) or a deploy, finally or rollback step's backup (taken when
// the step runs, e.g. after traffic is blocked, as the seed's
// deployment-script.sh calls preflight-backup.sh). All of a run's backups go
// into the run's one backup directory, under Dir (Plan.BackupDir).
type Backup struct {
	Dir   string       `yaml:"dir"`
	Steps []BackupStep `yaml:"steps"`
}

// BackupStep is one backup step: a command (argv, or a shell script like
// the seed's `pg_dump ... | gzip > "$BACKUP_DIR/database.sql.gz"`, run with
// BACKUP_DIR in its environment) or files copied into the backup directory
// by base name.
type BackupStep struct {
	Name    string   `yaml:"name"`
	Timeout Duration `yaml:"timeout"` // default 30m
	Command *Command `yaml:"command"`
	// Stdout, for a command step, is the file in the backup directory its
	// standard output is written to (the seed's `docker ps > docker_state.txt`
	// without a shell).
	Stdout string   `yaml:"stdout"`
	Files  []string `yaml:"files"`
}

type Deploy struct {
	Steps   []Step        `yaml:"steps"`
	Health  []HealthCheck `yaml:"health"`
	Finally []Step        `yaml:"finally"`
}

// Step is one deploy, rollback or finally step: exactly one kind field is
// set, or Text alone for a described manual step (rollback_steps' strings).
type Step struct {
	Text       string   `yaml:"-"`
	Name       string   `yaml:"name"`
	Timeout    Duration `yaml:"timeout"` // default 5m
	Retries    int      `yaml:"retries"`
	Idempotent bool     `yaml:"idempotent"`

	Command *Command     `yaml:"command"`
	HTTP    *HTTPStep    `yaml:"http"`
	Wait    *WaitStep    `yaml:"wait"`
	Restore *RestoreStep `yaml:"restore"`
	SQL     *SQLStep     `yaml:"sql"`
	// Backup takes a backup now, into the run's backup directory (made
	// now when pre-flight made none), with the shape of preflight.backup.
	Backup *Backup `yaml:"backup"`

	// RetryDelay is the pause before the first retry, doubled for each
	// next one (default 1s, capped at 1m).
	RetryDelay Duration `yaml:"retry_delay"`
}

// SQLStep runs File (a path read when the step runs) or Statements in one
// transaction on the database whose DSN is in the environment variable
// DSNEnv (never written in the plan).
type SQLStep struct {
	DSNEnv     string   `yaml:"dsn_env"`
	File       string   `yaml:"file"`
	Statements []string `yaml:"statements"`
	// IfExists: a missing File is not an error: the step succeeds with "no
	// pending migrations" (the seed's `if [ -f migrations/pending.sql ]`).
	IfExists bool `yaml:"if_exists"`
}

type HTTPStep struct {
	Method       string            `yaml:"method"` // default POST
	URL          string            `yaml:"url"`
	Body         string            `yaml:"body"`
	JSON         any               `yaml:"json"`
	HeadersEnv   map[string]string `yaml:"headers_env"`
	ExpectStatus int               `yaml:"expect_status"` // default: any 2xx
	// Expect: the smoke tests' assertions on the response (status, JSON
	// paths, headers, body, latency); the step fails when one is unmet.
	Expect Expect `yaml:"expect"`
}

// WaitStep waits Duration, or Until an HTTP check passes.
type WaitStep struct {
	Duration Duration   `yaml:"duration"`
	Until    *WaitUntil `yaml:"until"`
}

// WaitUntil GETs URL every Interval (default 5s) until it answers
// ExpectStatus (default any 2xx) and meets every assertion of Expect, for
// at most Timeout (default: the step's timeout).
type WaitUntil struct {
	URL string `yaml:"url"`
	// Successes is how many checks in a row must pass (default 1): after a
	// gateway's reload a worker about to retire may still take a new
	// connection for a moment, so one good answer does not yet mean every
	// client gets it.
	Successes    int      `yaml:"successes"`
	ExpectStatus int      `yaml:"expect_status"`
	Expect       Expect   `yaml:"expect"`
	Interval     Duration `yaml:"interval"`
	Timeout      Duration `yaml:"timeout"`
}

// RestoreStep copies a file back from the run's own backup directory
// (preflight.backup and backup steps) without a shell: File is its name in the backup (a
// files step's base name, or a name a command step wrote), To where it goes.
type RestoreStep struct {
	File string `yaml:"file"`
	To   string `yaml:"to"`
}

// HealthCheck is the seed's health_check(): GET url until it answers 2xx
// (or ExpectStatus) and meets every assertion of Expect.
type HealthCheck struct {
	URL          string   `yaml:"url"`
	Attempts     int      `yaml:"attempts"`      // default 10
	Interval     Duration `yaml:"interval"`      // default 10s
	InitialDelay Duration `yaml:"initial_delay"` // default 30s
	ExpectStatus int      `yaml:"expect_status"`
	Timeout      Duration `yaml:"timeout"` // per attempt, default 5s
	// HeadersEnv: header → the environment variable holding its value
	// (e.g. {Authorization: HEALTH_TOKEN}); the value is never shown in a
	// health result.
	HeadersEnv map[string]string `yaml:"headers_env"`
	// Expect: the smoke tests' assertions (status, JSON paths, headers,
	// body, latency); a check passes only when every one holds, so a gate
	// can wait until the new release (not an old worker) answers.
	Expect Expect `yaml:"expect"`
}

type Monitor struct {
	Window       Duration           `yaml:"window"`   // default 30m
	Interval     Duration           `yaml:"interval"` // default 30s
	Sources      []Source           `yaml:"sources"`
	Thresholds   map[string]float64 `yaml:"thresholds"` // default: the seed's five
	AutoRollback *AutoRollback      `yaml:"auto_rollback"`
	// Gates, Baseline and Mode: see monitor_gates.go.
	Gates    map[string]Gate `yaml:"gates"`
	Baseline Duration        `yaml:"baseline"`
	Mode     string          `yaml:"mode"`
	// Start is when judging starts: deploy_done (default) or
	// deploy_started; see monitor_start.go.
	Start string `yaml:"start"`
}

// Source is one metric source: exactly one field is set. The kinds beyond
// http_probe and prometheus_scrape are in monitor_sources.go.
type Source struct {
	HTTPProbe        *HTTPProbe          `yaml:"http_probe"`
	PrometheusScrape *PrometheusScrape   `yaml:"prometheus_scrape"`
	PrometheusQuery  *PrometheusQuery    `yaml:"prometheus_query"`
	System           *SystemSource       `yaml:"system"`
	Alertmanager     *AlertmanagerSource `yaml:"alertmanager"`
}

type HTTPProbe struct {
	URL      string `yaml:"url"`
	Method   string `yaml:"method"`   // default GET
	Requests int    `yaml:"requests"` // per interval, default 10
}

// PrometheusScrape reads the target's /metrics text format.
type PrometheusScrape struct {
	URL string `yaml:"url"`
	// LatencyHistogram is the request-duration histogram (seconds) the p95 is
	// computed from, by bucket deltas between scrapes.
	LatencyHistogram string `yaml:"latency_histogram"`
	// RequestsCounter and ErrorsCounter give the error rate by counter deltas.
	// RequestsCounter defaults to the histogram's _count.
	RequestsCounter string `yaml:"requests_counter"`
	ErrorsCounter   string `yaml:"errors_counter"`
	// Metrics are further series read from the scrape: gauges, counter
	// rates, histogram quantiles, with label matchers (monitor_sources.go).
	Metrics []ScrapeMetric `yaml:"metrics"`
}

type AutoRollback struct {
	Metrics []string `yaml:"metrics"` // default api_response_time_p95, error_rate
	Factor  float64  `yaml:"factor"`  // default 1.5
}

type Test struct {
	Smoke []SmokeTest `yaml:"smoke"`
	// Suites are named groups of smoke tests run after Smoke, in order
	// (smoke.go).
	Suites []SmokeSuite `yaml:"suites"`
	Load   *LoadTest    `yaml:"load"`
	// RollbackOnFailure asks for a rollback when a test fails (default true).
	RollbackOnFailure *bool `yaml:"rollback_on_failure"`
	// SecretHosts are the hosts a test request may send a value from the
	// tester's environment to (${env:NAME} anywhere in the request, or
	// headers_env): "host" (any port) or "host:port". Default none: a
	// plan without it sends no environment value anywhere. Validation
	// refuses a request that would send one elsewhere; the tester refuses
	// it too and follows no redirect that would carry it elsewhere
	// (secrets.go).
	SecretHosts []string `yaml:"secret_hosts"`
}

type SmokeTest struct {
	Name    string   `yaml:"name"`
	Type    string   `yaml:"type"` // smoke (default), regression, performance
	Request Request  `yaml:"request"`
	Expect  Expect   `yaml:"expect"`
	Timeout Duration `yaml:"timeout"` // default 10s
	// Capture names values taken from the response, used by later steps as
	// ${name}: name → JSON path, "header:Name" or {json|header, secret}
	// (see Capture in smoke.go).
	Capture map[string]any `yaml:"capture"`
}

type Request struct {
	// Name names a load-test request in its per-request latencies (default
	// "METHOD path"); smoke tests are named by their test's name.
	Name       string            `yaml:"name"`
	Method     string            `yaml:"method"` // default GET
	URL        string            `yaml:"url"`
	JSON       any               `yaml:"json"`
	Body       string            `yaml:"body"`
	Headers    map[string]string `yaml:"headers"`
	HeadersEnv map[string]string `yaml:"headers_env"`
}

// Expect is what a response must show: a smoke test's, a health check's,
// a wait.until's or an http step's (domain/expect evaluates it). Every
// assertion is checked and every unmet one reported.
//
// A JSON path is the short form ("data.items[0].id") or an RFC 9535
// JSONPath from $ ("$..id", "$.items[?@.sku=='A'].price"); see
// ParseJSONPath. A path selects zero, one or several values: none is a
// missing field; json and json_match hold when every value selected meets
// them (a path that selects one value, as every short-form path does,
// compares that value); json_absent holds when none is selected.
type Expect struct {
	Status int `yaml:"status"` // default: any 2xx
	MaxMS  int `yaml:"max_ms"` // latency bound, request sent to last byte read
	// JSON: path → expected value, that every value selected equals ("*":
	// the path selects at least one value).
	JSON map[string]any `yaml:"json"`
	// JSONMatch: path → regular expression the text of every value
	// selected must match.
	JSONMatch map[string]string `yaml:"json_match"`
	// JSONAbsent: paths that must select nothing.
	JSONAbsent []string `yaml:"json_absent"`
	// Headers: header → exact value ("*": must be present).
	Headers map[string]string `yaml:"headers"`
	// HeadersMatch: header → regular expression the value must match.
	HeadersMatch map[string]string `yaml:"headers_match"`
	// BodyContains: texts the response body must contain.
	BodyContains []string `yaml:"body_contains"`
}

type LoadTest struct {
	VUs       int       `yaml:"vus"`        // default 50
	Duration  Duration  `yaml:"duration"`   // default 5m
	Requests  []Request `yaml:"requests"`   // one iteration, in order
	ThinkTime Duration  `yaml:"think_time"` // sleep per iteration, default 1s
	Gates     LoadGates `yaml:"gates"`
	// Stages ramp the closed model's virtual users instead of vus and
	// duration (see load.go).
	Stages []LoadStage `yaml:"stages"`
	// Rate (iterations started per second) selects the open model.
	Rate float64 `yaml:"rate"`
	// MaxInFlight bounds the open model's iterations in flight (default 1000).
	MaxInFlight int `yaml:"max_in_flight"`
	// AbortEarly stops a test whose gate has clearly failed (default true).
	AbortEarly *bool `yaml:"abort_early"`
	// Regression judges latencies against the last passing run (default on).
	Regression *LoadRegression `yaml:"regression"`
}

type LoadGates struct {
	P95MS     float64 `yaml:"p95_ms"`     // default 2100
	ErrorRate float64 `yaml:"error_rate"` // default 0.01
	// Percentiles gate any percentile: "p99: 3000", "p99.9: 5000", "max: 10000" (ms).
	Percentiles map[string]float64 `yaml:"percentiles"`

	// errorRateSet is true when Parse read error_rate, so that an explicit
	// 0 (no errors allowed) is not taken for the default.
	errorRateSet bool
}

type Report struct {
	Notify []Notify `yaml:"notify"`
}

type Notify struct {
	Slack   *SlackNotify   `yaml:"slack"`
	Webhook *WebhookNotify `yaml:"webhook"`
	Email   *EmailNotify   `yaml:"email"`
	// On lists when the destination is told: "started" (the deploy
	// started: the seed's slack_notify "🚀 Deployment started") and
	// "final" (the report; the default). E-mail carries the report only.
	On []string `yaml:"on"`
}

type SlackNotify struct {
	WebhookEnv string `yaml:"webhook_env"`
	When       string `yaml:"when"` // always (default), failure, success
}

type WebhookNotify struct {
	URL  string `yaml:"url"`
	When string `yaml:"when"`
}

type EmailNotify struct {
	SMTPEnv string   `yaml:"smtp_env"`
	To      []string `yaml:"to"`
	When    string   `yaml:"when"`
}
