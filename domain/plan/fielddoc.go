package plan

import (
	"reflect"
	"strings"
)

// FieldDoc documents one plan field for people and tools: the plan
// reference (docs/plan-reference.md) and the JSON Schema
// (docs/plan.schema.json) are generated from the plan's types and these
// entries (package planschema). Every field of every plan type has one
// (TestEveryFieldIsDocumented); Allowed takes the same word lists the
// validator checks against.
type FieldDoc struct {
	// Doc says what the field is for, in a sentence or two.
	Doc string
	// Default is the value taken when the field is left out, as written in
	// a plan ("5m", "GET"), or in words ("any 2xx"); "" when there is none.
	Default string
	// Allowed lists the values the field takes, when it is one of a few.
	Allowed []string
	// Example is a value as written after "key: " in a plan (YAML).
	Example string
	// Phase names what reads the field: preflight, deployer, monitor,
	// tester, reporter (the services), or validate (only shown); "" takes
	// the enclosing field's.
	Phase string
}

// Phases (FieldDoc.Phase).
const (
	PhasePreflight = "preflight"
	PhaseDeployer  = "deployer"
	PhaseMonitor   = "monitor"
	PhaseTester    = "tester"
	PhaseReporter  = "reporter"
	PhaseValidate  = "validate"
)

// ApprovalTimeoutKey is the reserved key of the approval section
// (Plan.ApprovalTimeout): a duration, not a role.
const ApprovalTimeoutKey = "timeout"

// ExtensionPrefix starts the top-level keys the parser ignores (x-common:
// &anchor {...}), as in Compose files.
const ExtensionPrefix = "x-"

// YAMLField is one field of a plan type as the plan writes it.
type YAMLField struct {
	Name  string // the yaml key
	Index int    // the struct field's index
}

// YAMLFields lists the fields of plan type t that a plan writes (exported,
// with a yaml key other than "-"), in declaration order. The decoder and
// the generated reference and schema all read the types through it.
func YAMLFields(t reflect.Type) []YAMLField {
	var out []YAMLField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || name == "" {
			continue
		}
		out = append(out, YAMLField{Name: name, Index: i})
	}
	return out
}

// DocOf is the documentation of field key of plan type t (a struct type
// of this package), and whether there is one.
func DocOf(t reflect.Type, key string) (FieldDoc, bool) {
	d, ok := fieldDocs[t.Name()+"."+key]
	return d, ok
}

// ApprovalTimeoutDoc documents approval.timeout.
func ApprovalTimeoutDoc() FieldDoc { return fieldDocs["Plan.approval.timeout"] }

// CaptureDoc documents the value of one test.smoke[].capture entry (a
// JSON path, "header:Name", or {json|header, secret}).
func CaptureDoc() FieldDoc { return fieldDocs["Capture"] }

// DurationDoc says how every duration field may be written.
const DurationDoc = `a duration: Go's form (30s, 5m, 1h30m, 250ms) or the seed's words ("2 hours", "30 minutes", "15 min", "1 day"); 0 is zero`

var (
	expectPhrase  = "The response must show every assertion of this block (domain/expect evaluates it); every unmet one is reported with the value found."
	headersEnvDoc = "Header name → the NAME of the environment variable holding its value (e.g. {Authorization: API_TOKEN}); the value never appears in the plan, an event or a log."
)

// fieldDocs: "Type.key" → its documentation.
var fieldDocs = map[string]FieldDoc{
	// --- Plan: the seed's template ---
	"Plan.change_request":        {Doc: "What the change is: the seed's change_request block. Shown by validate, carried by change.requested, named in the report and the QC summary.", Phase: PhaseReporter, Example: `{id: CR-2025-001, title: "estimator v2.4.0", type: enhancement, priority: medium}`},
	"Plan.requester":             {Doc: "Who asks for the change. The requester may not approve it (separation of duties).", Phase: PhaseDeployer, Example: `{name: Kim, role: SRE, contact: kim@example.com}`},
	"Plan.description":           {Doc: "Why and how, in words: shown to people (validate, the report), never executed.", Phase: PhaseValidate, Example: `{summary: "roll out v2.4.0"}`},
	"Plan.scope":                 {Doc: "What the change touches. systems_affected is named in the QC summary's header.", Phase: PhaseReporter, Example: `{systems_affected: [Estimator Service]}`},
	"Plan.timeline":              {Doc: "When the change may run: planned_start opens the change window and window_end closes it (the deployer's gate); the other fields are shown.", Phase: PhaseDeployer, Example: `{planned_start: "2025-09-23T02:00:00Z", window_end: "2025-09-23T04:00:00Z"}`},
	"Plan.risks_and_mitigations": {Doc: "The change's risks, scored by the seed's risk matrix in pre-flight (plan.assessed); a HIGH or CRITICAL risk adds executive_approval.", Phase: PhasePreflight, Example: `[{risk: "model incompatible", probability: low, impact: major, mitigation: "roll back"}]`},
	"Plan.rollback_plan":         {Doc: "How the change is undone: the steps the deployer runs on a rollback, and the smoke suites the tester re-runs to verify it.", Phase: PhaseDeployer, Example: `{rollback_steps: [{name: switch back, command: {argv: [./switch.sh, v2.4.0]}}]}`},
	"Plan.approval":              {Doc: "Role → its approver: the run waits after pre-flight until every role approved with `runbook approve` (status and timestamp written here are never trusted). The reserved key timeout bounds the wait.", Phase: PhaseDeployer, Example: `{technical_approval: {approver: lead-architect}, timeout: 4h}`},
	"Plan.approval.timeout":      {Doc: "How long after pre-flight passed the approvals may take; a run still missing one then ends EXPIRED. A reserved key of the approval section, not a role.", Default: "no limit", Phase: PhaseDeployer, Example: "4h"},
	"Plan.reverts":               {Doc: "Written by `runbook revert`, not by hand: this run undoes run `run`, which ended SUCCESS. Its restore steps and RUNBOOK_BACKUP_DIR read that run's backup; pre-flight checks that run again and records revert.requested on it; both reports link.", Phase: PhaseDeployer, Example: `{run: DEPLOY-20261130-031500, change_id: CR-2025-001, reason: "wrong estimates"}`},
	"Reverts.run":                {Doc: "The id of the run this one reverts.", Phase: PhasePreflight, Example: "DEPLOY-20261130-031500"},
	"Reverts.change_id":          {Doc: "The change id of the run this one reverts (shown in the reports).", Phase: PhaseReporter, Example: "CR-2025-001"},
	"Reverts.reason":             {Doc: "Why it is reverted (runbook revert --reason).", Phase: PhaseReporter, Example: "customers report wrong estimates"},
	// --- Plan: the executable parts ---
	"Plan.preflight": {Doc: "PRE-FLIGHT: the checks that must pass before anything changes, and the run's backup.", Phase: PhasePreflight, Example: `{checks: [{name: service up, http: {url: "http://127.0.0.1:8080/health"}}]}`},
	"Plan.deploy":    {Doc: "ACT: the deploy steps, the health gate after them, and the finally steps that always run.", Phase: PhaseDeployer, Example: `{steps: [{name: deploy, command: {argv: [./deploy.sh, v2]}}]}`},
	"Plan.monitor":   {Doc: "The watch window: metric sources sampled every interval once the release serves, judged against thresholds and gates; a breach beyond auto_rollback asks for a rollback.", Phase: PhaseMonitor, Example: `{window: 10m, sources: [{http_probe: {url: "http://127.0.0.1:8080/health"}}]}`},
	"Plan.test":      {Doc: "TEST: smoke tests and suites, and a load test, run once the release serves; a failure asks for a rollback.", Phase: PhaseTester, Example: `{smoke: [{name: health, request: {url: "http://127.0.0.1:8080/health"}}]}`},
	"Plan.report":    {Doc: "REPORT: where the report is sent besides the report.ready event.", Phase: PhaseReporter, Example: `{notify: [{slack: {webhook_env: SLACK_WEBHOOK_URL}}]}`},

	"ChangeRequest.id":       {Doc: "The change request's id; the load test's regression baseline is the last passing run with the same id.", Example: "CR-2025-001", Phase: PhaseReporter},
	"ChangeRequest.title":    {Doc: "A one-line title, shown by submit, the dashboard and the report.", Example: `"estimator v2.4.0"`},
	"ChangeRequest.type":     {Doc: "The kind of change; emergency does not wait for timeline.planned_start.", Allowed: changeTypes, Example: "enhancement", Phase: PhaseDeployer},
	"ChangeRequest.priority": {Doc: "The change's priority, shown in the report.", Allowed: priorities, Example: "medium"},

	"Requester.name":    {Doc: "The requester's name; they cannot approve their own change.", Example: "Kim"},
	"Requester.role":    {Doc: "The requester's job title, shown.", Example: "SRE", Phase: PhaseValidate},
	"Requester.contact": {Doc: "How to reach the requester, shown.", Example: "kim@example.com", Phase: PhaseValidate},

	"Description.summary":                {Doc: "What changes, in a sentence.", Example: `"roll out estimator v2.4.0"`},
	"Description.business_justification": {Doc: "Why the change is worth making.", Example: `"accuracy +3 %"`},
	"Description.technical_details":      {Doc: "How it is done, in words (a block text is fine).", Example: `"new model; API unchanged"`},

	"Scope.systems_affected":    {Doc: "The systems the change touches; the QC summary's header names them.", Example: "[Estimator Service]"},
	"Scope.components_modified": {Doc: "Files, services or images changed, shown.", Example: "[/app/config/model.json]", Phase: PhaseValidate},
	"Scope.data_changes":        {Doc: "Data the change alters, shown.", Example: `["none"]`, Phase: PhaseValidate},

	"Timeline.planned_start":      {Doc: "An RFC 3339 time that opens the change window: the deploy waits for it (an emergency change does not).", Default: "no wait", Example: `"2025-09-23T02:00:00Z"`},
	"Timeline.estimated_duration": {Doc: "How long the change should take, shown.", Example: `"2 hours"`, Phase: PhaseValidate},
	"Timeline.planned_completion": {Doc: "An RFC 3339 time the change should be done by, shown; not before planned_start.", Example: `"2025-09-23T04:00:00Z"`, Phase: PhaseValidate},
	"Timeline.milestones":         {Doc: "Milestones in words, shown.", Example: `["02:00 start", "02:30 deployed"]`, Phase: PhaseValidate},
	"Timeline.window_end":         {Doc: "An RFC 3339 time that closes the change window: a run whose deploy has not started by then ends EXPIRED (a started deploy is not cut short). After planned_start.", Default: "no end", Example: `"2025-09-23T04:00:00Z"`},

	"Risk.id":          {Doc: "The risk's id, shown in the risk report.", Example: "R001"},
	"Risk.risk":        {Doc: "The risk in words.", Example: `"model incompatible with old clients"`},
	"Risk.probability": {Doc: "How likely the risk is: the template's low/medium/high or the matrix's words. Required.", Allowed: probabilityWords, Example: "low"},
	"Risk.impact":      {Doc: "How bad it would be: the matrix's negligible..severe or the template's low/medium/high/critical. Required.", Allowed: impactWords, Example: "major"},
	"Risk.mitigation":  {Doc: "What limits the risk, shown in the risk report.", Example: `"roll back to v2.3.1"`},
	"Risk.owner":       {Doc: "Who owns the risk, shown in the risk report.", Example: `"AI Team Lead"`},

	"RollbackPlan.trigger_conditions":      {Doc: "When to roll back: texts (shown to people) or {metric, op, value} rules (shown by validate). The monitor judges monitor.thresholds and monitor.gates.", Example: `["API p95 > 5s", {metric: error_rate, op: ">", value: 0.01}]`, Phase: PhaseValidate},
	"RollbackPlan.rollback_steps":          {Doc: "The steps a rollback runs, in order: step mappings (as deploy.steps), or texts: described manual steps, shown to people and never run. One numbered text (\"1. ... 2. ...\", the seed's form) is read as manual steps too. A plan with deploy steps and no executable rollback step ends FAILED on a failure (nothing undone).", Example: `[{name: switch back, command: {argv: [./switch.sh, v2.3.1]}}, "tell the support team"]`},
	"RollbackPlan.estimated_rollback_time": {Doc: "How long a rollback should take, shown.", Example: `"30 minutes"`, Phase: PhaseValidate},
	"RollbackPlan.verify":                  {Doc: "Names of test.suites the tester re-runs, in this order, once the rollback's steps are done: all pass → ROLLED_BACK, one fails → ROLLBACK_FAILED.", Default: "none (a rollback is not verified)", Example: "[critical_paths]", Phase: PhaseTester},

	"TriggerCondition.metric": {Doc: "The metric compared. Required.", Allowed: KnownMetrics(), Example: "error_rate"},
	"TriggerCondition.op":     {Doc: "The comparison. Required.", Allowed: triggerOps, Example: `">"`},
	"TriggerCondition.value":  {Doc: "The number the metric is compared with. Required.", Example: "0.01"},

	"Approval.approver":  {Doc: "The keyring identity (runbook identity create NAME) that must approve this role; another person is refused.", Default: "anyone with the approver role", Example: "lead-architect"},
	"Approval.status":    {Doc: "Accepted because the seed writes it, never trusted: approvals exist only as `runbook approve` events (validate warns).", Example: "pending", Phase: PhaseValidate},
	"Approval.timestamp": {Doc: "Accepted because the seed writes it, never trusted (validate warns).", Example: `"2025-09-22T10:30:00Z"`, Phase: PhaseValidate},

	// --- preflight ---
	"Preflight.checks": {Doc: "The checks run concurrently in pre-flight, each with its timeout; a failed blocking check ends the run FAILED before anything changes. Each sets exactly one kind: http, tcp, env, command, postgres, redis, nats, resources or file.", Example: `[{name: api up, http: {url: "http://127.0.0.1:8080/health"}}]`},
	"Preflight.backup": {Doc: "The run's backup, taken at the end of pre-flight into the run's one backup directory (restore steps copy from it).", Default: "none", Example: `{dir: /backups, steps: [{files: [/etc/nginx/nginx.conf]}]}`},

	"Check.name":      {Doc: "The check's name in events and the report.", Default: "<kind> check <n>", Example: "api up"},
	"Check.timeout":   {Doc: "How long the check may take.", Default: "5s", Example: "3s"},
	"Check.blocking":  {Doc: "Whether a failure fails the pre-flight; false makes it a warning.", Default: "true (resources: false)", Example: "false"},
	"Check.http":      {Doc: "Request a URL: passes on the expected status, body text, JSON fields and latency.", Example: `{url: "http://127.0.0.1:8080/health", expect_status: 200}`},
	"Check.tcp":       {Doc: "Open a TCP connection.", Example: `{address: "db.internal:5432"}`},
	"Check.env":       {Doc: "Environment variables of the preflight service that must be set and not empty; only SET / NOT SET is reported.", Example: "{required: [DATABASE_URL]}"},
	"Check.command":   {Doc: "Run a program (argv only, no shell); passes on its expected exit code.", Example: "{argv: [git, diff, --quiet]}"},
	"Check.postgres":  {Doc: "Connect to PostgreSQL and run a query.", Example: "{dsn_env: DATABASE_URL}"},
	"Check.redis":     {Doc: "Send PING (after AUTH when there is a password) to Redis.", Example: `{address: "127.0.0.1:6379"}`},
	"Check.nats":      {Doc: "Connect to a NATS server and report its version.", Example: `{url: "nats://127.0.0.1:4222"}`},
	"Check.resources": {Doc: "Compare this machine's CPU, memory and disk use with limits; over a limit is a warning unless blocking: true.", Example: "{cpu_percent: 90}"},
	"Check.file":      {Doc: "A file or directory that must exist and be readable.", Example: "{path: /etc/nginx/nginx.conf}"},

	"HTTPCheck.url":           {Doc: "An http:// or https:// URL. Required.", Example: `"http://127.0.0.1:8080/health"`},
	"HTTPCheck.method":        {Doc: "The HTTP method.", Default: "GET", Allowed: httpMethods, Example: "GET"},
	"HTTPCheck.expect_status": {Doc: "The status that passes.", Default: "any 2xx", Example: "200"},
	"HTTPCheck.body_contains": {Doc: "A text the body must contain.", Example: "ok"},
	"HTTPCheck.json":          {Doc: "Top-level or dotted field → the value it must have.", Example: "{status: ok}"},
	"HTTPCheck.max_ms":        {Doc: "The latency bound in milliseconds.", Default: "none", Example: "500"},
	"HTTPCheck.headers_env":   {Doc: headersEnvDoc, Example: "{Authorization: API_TOKEN}"},

	"TCPCheck.address": {Doc: "host:port. Required.", Example: `"db.internal:5432"`},

	"EnvCheck.required": {Doc: "The variables' names (capitals, digits and _). At least one.", Example: "[DATABASE_URL, API_TOKEN]"},

	"Command.argv":        {Doc: "The program and its arguments, run directly (never through a shell). Exactly one of argv and shell.", Example: "[kubectl, rollout, status, deploy/api]"},
	"Command.shell":       {Doc: "Your own script, run as /bin/sh -c SCRIPT: only in deploy, finally, rollback and backup steps (not in pre-flight checks). Run data reaches it as RUNBOOK_* environment variables.", Example: `"set -e; ./deploy.sh v2.4.1"`},
	"Command.dir":         {Doc: "The working directory.", Default: "the service's working directory", Example: "/srv/app"},
	"Command.env":         {Doc: "Extra environment variables: NAME → value.", Example: "{RELEASE: v2.4.1}"},
	"Command.expect_exit": {Doc: "The exit code that means success, 0..255.", Default: "0", Example: "0"},

	"PostgresCheck.dsn_env": {Doc: "The NAME of the environment variable holding the DSN (a postgres:// URL or key=value pairs), never the DSN itself. Required.", Example: "DATABASE_URL"},
	"PostgresCheck.query":   {Doc: "The query; its first row is the check's value.", Default: DefaultPostgresQuery, Example: `"select 1"`},

	"RedisCheck.address":      {Doc: "host:port. This or address_env.", Example: `"127.0.0.1:6379"`},
	"RedisCheck.address_env":  {Doc: "The NAME of the variable holding host:port or a redis:// / rediss:// URL. This or address.", Example: "REDIS_URL"},
	"RedisCheck.password_env": {Doc: "The NAME of the variable holding the password (it wins over one in the URL).", Example: "REDIS_PASSWORD"},

	"NATSCheck.url":     {Doc: "A NATS URL (nats://, tls://, ws://, wss://; several separated by commas). This or url_env.", Example: `"nats://127.0.0.1:4222"`},
	"NATSCheck.url_env": {Doc: "The NAME of the variable holding the URL (for one with credentials). This or url.", Example: "NATS_URL"},

	"ResourcesCheck.cpu_percent":    {Doc: "The CPU use limit in percent (two /proc/stat samples 200 ms apart).", Default: "80", Example: "90"},
	"ResourcesCheck.memory_percent": {Doc: "The memory use limit in percent ((MemTotal-MemAvailable)/MemTotal).", Default: "85", Example: "90"},
	"ResourcesCheck.disk_percent":   {Doc: "The disk use limit in percent (as df's Use%).", Default: "90", Example: "95"},
	"ResourcesCheck.disk_path":      {Doc: "The filesystem whose use is compared.", Default: DefaultResourcesDiskPath, Example: "/var"},

	"FileCheck.path": {Doc: "The path. Required.", Example: "/etc/nginx/nginx.conf"},

	"Backup.dir":   {Doc: "Where the run's one backup directory, <dir>/<run id>-YYYYMMDD_HHMMSS, is made; every backup of the plan must name the same dir or none.", Default: DefaultBackupDir + " (relative to the service's working directory)", Example: "/backups"},
	"Backup.steps": {Doc: "What to back up: each step a command or files. A backup step (in deploy, finally or rollback) needs at least one.", Example: `[{files: [/etc/nginx/nginx.conf]}, {name: database, command: {shell: 'pg_dump mydb | gzip > "$BACKUP_DIR/db.sql.gz"'}}]`},

	"BackupStep.name":    {Doc: "The backup step's name.", Default: "<kind> backup step <n>", Example: "database"},
	"BackupStep.timeout": {Doc: "How long the backup step may take.", Default: "30m", Example: "10m"},
	"BackupStep.command": {Doc: "A command (argv or shell) that writes into $BACKUP_DIR.", Example: `{shell: 'pg_dump mydb | gzip > "$BACKUP_DIR/db.sql.gz"'}`},
	"BackupStep.stdout":  {Doc: "For a command step: the file in the backup directory its standard output goes to (a name, without /).", Example: "docker_state.txt"},
	"BackupStep.files":   {Doc: "Files copied into the backup directory by base name (restore steps find them by it).", Example: "[/etc/nginx/nginx.conf]"},

	// --- deploy ---
	"Deploy.steps":   {Doc: "The deploy steps, run in order; a failed step (after its retries) rolls the change back. Each step sets exactly one kind: command, http, wait, restore, sql or backup.", Example: `[{name: deploy, command: {argv: [./deploy.sh, v2.4.1]}}]`},
	"Deploy.health":  {Doc: "The health gate after the steps: every check must pass (each GETs its URL until every assertion holds); a failed gate rolls back.", Example: `[{url: "http://127.0.0.1:8080/health", initial_delay: 5s}]`},
	"Deploy.finally": {Doc: "Steps that always run after the steps and the health gate, passed or failed (e.g. restore traffic).", Example: `[{name: restore traffic, http: {url: "http://lb.internal/restore"}}]`},

	"Step.name":        {Doc: "The step's name in events, the dashboard and the report.", Default: "what it does (e.g. the command line)", Example: "deploy v2.4.1"},
	"Step.timeout":     {Doc: "How long one try of the step may take; a command's process group is killed whole at the timeout.", Default: "5m (a backup step: the sum of its backup steps' timeouts)", Example: "30s"},
	"Step.retries":     {Doc: "How many times a failed step is tried again.", Default: "0", Example: "2"},
	"Step.idempotent":  {Doc: "true: safe to run again, so a deploy resumed after a crash re-runs a step it cut short (restore and backup steps always are).", Default: "false", Example: "true"},
	"Step.command":     {Doc: "Run a program (argv) or your script (shell), in its own process group; secrets redacted from its output.", Example: "{argv: [./deploy.sh, v2.4.1]}"},
	"Step.http":        {Doc: "Send one HTTP request; fails when an assertion does not hold.", Example: `{url: "http://127.0.0.1:8080/admin/switch", expect: {status: 202}}`},
	"Step.wait":        {Doc: "Wait a duration, or until an HTTP check passes.", Example: "{duration: 30s}"},
	"Step.restore":     {Doc: "Copy a file back from the run's backup directory (no shell).", Example: "{file: nginx.conf, to: /etc/nginx/nginx.conf}"},
	"Step.sql":         {Doc: "Run a .sql file or statements in one transaction.", Example: "{dsn_env: DATABASE_URL, file: migrations/pending.sql, if_exists: true}"},
	"Step.backup":      {Doc: "Take a backup now (e.g. after traffic is blocked) into the run's backup directory; the shape of preflight.backup.", Example: "{steps: [{files: [/app/config/production.json]}]}"},
	"Step.retry_delay": {Doc: "The pause before the first retry, doubled for each next one (capped at 1m).", Default: "1s", Example: "5s"},

	"SQLStep.dsn_env":    {Doc: "The NAME of the environment variable holding the DSN, never the DSN itself. Required.", Example: "DATABASE_URL"},
	"SQLStep.file":       {Doc: "A .sql file read when the step runs. This or statements.", Example: "migrations/pending.sql"},
	"SQLStep.statements": {Doc: "SQL statements. This or file.", Example: `["UPDATE flags SET on = true WHERE name = 'v2'"]`},
	"SQLStep.if_exists":  {Doc: "With file: a missing file is no error (\"no pending migrations\").", Default: "false", Example: "true"},

	"HTTPStep.method":        {Doc: "The HTTP method.", Default: DefaultStepHTTPMethod, Allowed: httpMethods, Example: "POST"},
	"HTTPStep.url":           {Doc: "An http:// or https:// URL. Required.", Example: `"http://127.0.0.1:8080/admin/switch"`},
	"HTTPStep.body":          {Doc: "The request body as text. This or json.", Example: `"release=v2.4.1"`},
	"HTTPStep.json":          {Doc: "The request body as JSON (any YAML value). This or body.", Example: "{release: v2.4.1}"},
	"HTTPStep.headers_env":   {Doc: headersEnvDoc, Example: "{Authorization: ADMIN_TOKEN}"},
	"HTTPStep.expect_status": {Doc: "The status that passes (the older form of expect.status; not both).", Default: "any 2xx", Example: "202"},
	"HTTPStep.expect":        {Doc: expectPhrase, Example: "{status: 202, json: {switched: true}}"},

	"WaitStep.duration": {Doc: "How long to wait. This or until.", Example: "30s"},
	"WaitStep.until":    {Doc: "GET a URL until every assertion holds. This or duration.", Example: `{url: "http://127.0.0.1:8080/health", expect: {json: {release: v2.4.1}}}`},

	"WaitUntil.url":           {Doc: "An http:// or https:// URL, opened on a new connection each time. Required.", Example: `"http://127.0.0.1:8080/health"`},
	"WaitUntil.successes":     {Doc: "How many checks in a row must pass, 1..100 (right after a reload an old worker may still answer once).", Default: "1", Example: "3"},
	"WaitUntil.expect_status": {Doc: "The status that passes (the older form of expect.status; not both).", Default: "any 2xx", Example: "200"},
	"WaitUntil.expect":        {Doc: expectPhrase, Example: "{json: {$.release: v2.4.1}}"},
	"WaitUntil.interval":      {Doc: "The pause between checks.", Default: "5s", Example: "1s"},
	"WaitUntil.timeout":       {Doc: "How long to keep trying.", Default: "the step's timeout", Example: "30s"},

	"RestoreStep.file": {Doc: "The file's name in the run's backup directory (a files step's base name, or a name a command step wrote). Required.", Example: "nginx.conf"},
	"RestoreStep.to":   {Doc: "Where the file goes back to. Required.", Example: "/etc/nginx/nginx.conf"},

	"HealthCheck.url":           {Doc: "An http:// or https:// URL, opened on a new connection each attempt. Required.", Example: `"http://127.0.0.1:8080/health"`},
	"HealthCheck.attempts":      {Doc: "How many tries before the gate fails.", Default: "10", Example: "5"},
	"HealthCheck.interval":      {Doc: "The pause between tries.", Default: "10s", Example: "2s"},
	"HealthCheck.initial_delay": {Doc: "The wait before the first try; 0s for none.", Default: "30s", Example: "0s"},
	"HealthCheck.expect_status": {Doc: "The status that passes (the older form of expect.status; not both).", Default: "any 2xx", Example: "200"},
	"HealthCheck.timeout":       {Doc: "The timeout of one try.", Default: "5s", Example: "2s"},
	"HealthCheck.headers_env":   {Doc: headersEnvDoc, Example: "{Authorization: HEALTH_TOKEN}"},
	"HealthCheck.expect":        {Doc: expectPhrase + " A gate that checks content (e.g. the release) cannot be passed by an old worker.", Example: "{status: 200, json: {$.release: v2.4.1}}"},

	// --- monitor ---
	"Monitor.window":        {Doc: "How long the release is watched once it serves.", Default: "30m", Example: "10m"},
	"Monitor.interval":      {Doc: "How often every source is sampled; shorter than the window.", Default: "30s", Example: "15s"},
	"Monitor.sources":       {Doc: "Where the metrics come from; each sets exactly one kind: http_probe, prometheus_scrape, prometheus_query, system or alertmanager.", Default: "none (nothing is watched)", Example: `[{http_probe: {url: "http://127.0.0.1:8080/health"}}]`},
	"Monitor.thresholds":    {Doc: "Metric → the value above which a sample breaches (the seed's `value > threshold`); overrides the seed's five defaults. Keys: the seed's metrics and those the sources report.", Default: "api_response_time_p95: 2100, error_rate: 0.01, cpu_utilization: 80, memory_usage: 85, active_connections: 1000", Example: "{api_response_time_p95: 1800, error_rate: 0.02}"},
	"Monitor.auto_rollback": {Doc: "Which breaches roll back by themselves: a metric of metrics beyond factor × its threshold (the seed's 150 % rule).", Default: "{metrics: [api_response_time_p95, error_rate], factor: 1.5}", Example: "{metrics: [error_rate], factor: 2}"},
	"Monitor.gates":         {Doc: "Metric → how it is judged (max or min, critical band, N of M, grace, no data, shadow); a threshold is a gate {max: value} with every default.", Example: `{api_response_time_p95: {max: 2100, for: "3 of 5"}}`},
	"Monitor.baseline":      {Doc: "The pre-deploy baseline window, sampled before deploy.started; 0s for one round.", Default: "3 intervals, at most 1m", Example: "1m"},
	"Monitor.mode":          {Doc: "enforce: failed gates roll back; shadow: violations recorded, never a rollback. A gate's own mode wins.", Default: ModeEnforce, Allowed: gateModes, Example: ModeShadow},
	"Monitor.start":         {Doc: "When judging starts: deploy_done (once the release serves) or deploy_started (the deploy's own samples judged too: canary-style).", Default: StartDeployDone, Allowed: monitorStarts, Example: StartDeployStarted},

	"Source.http_probe":        {Doc: "Send requests to a URL every interval: the p95 latency and the error rate.", Example: `{url: "http://127.0.0.1:8080/health", requests: 10}`},
	"Source.prometheus_scrape": {Doc: "Read the target's /metrics (Prometheus text format): the p95 from a histogram, the error rate from counters, and further series.", Example: `{url: "http://127.0.0.1:8080/metrics", latency_histogram: http_request_duration_seconds}`},
	"Source.prometheus_query":  {Doc: "Run PromQL instant queries on a Prometheus server, one metric per query.", Example: `{url: "http://prometheus:9090", queries: {error_rate: "sum(rate(http_errors_total[1m])) / sum(rate(http_requests_total[1m]))"}}`},
	"Source.system":            {Doc: "Sample the host's CPU, memory and disk (cpu_utilization, memory_usage, disk_usage), or one process by its pid file (process_rss_bytes instead of disk_usage).", Example: "{disk_path: /var}"},
	"Source.alertmanager":      {Doc: "Alerts Alertmanager posts to the monitor's webhook receiver: an alert whose labels match, firing during the window, is a critical violation (metric alert:<alertname>).", Example: "{match: {service: estimator}}"},

	"HTTPProbe.url":      {Doc: "An http:// or https:// URL. Required.", Example: `"http://127.0.0.1:8080/health"`},
	"HTTPProbe.method":   {Doc: "The HTTP method.", Default: DefaultRequestMethod, Allowed: httpMethods, Example: "GET"},
	"HTTPProbe.requests": {Doc: "Requests per interval.", Default: "10", Example: "5"},

	"PrometheusScrape.url":               {Doc: "The /metrics URL. Required.", Example: `"http://127.0.0.1:8080/metrics"`},
	"PrometheusScrape.latency_histogram": {Doc: "The request-duration histogram (seconds) the p95 is computed from, by bucket deltas between scrapes.", Example: "http_request_duration_seconds"},
	"PrometheusScrape.requests_counter":  {Doc: "The request counter of the error rate.", Default: "the histogram's _count", Example: "http_requests_total"},
	"PrometheusScrape.errors_counter":    {Doc: "The error counter of the error rate (errors / requests between scrapes).", Example: "http_errors_total"},
	"PrometheusScrape.metrics":           {Doc: "Further series read from the scrape: gauges, counter rates, histogram quantiles.", Example: "[{name: process_resident_memory_bytes, as: rss_bytes}]"},

	"ScrapeMetric.name":     {Doc: "The metric family in the exposition text. Required.", Example: "http_request_duration_seconds"},
	"ScrapeMetric.type":     {Doc: "gauge (the value), counter_rate (per second between two scrapes) or histogram_quantile (from the bucket deltas).", Default: ScrapeGauge, Allowed: scrapeTypes, Example: ScrapeHistogramQuantile},
	"ScrapeMetric.quantile": {Doc: "A histogram_quantile's quantile, in (0, 1].", Default: "0.95", Example: "0.99"},
	"ScrapeMetric.match":    {Doc: "Label → exact value: only these label sets are summed.", Example: "{path: /api}"},
	"ScrapeMetric.scale":    {Doc: "Multiplies the value (1000: seconds to milliseconds).", Default: "1", Example: "1000"},
	"ScrapeMetric.as":       {Doc: "The metric name the samples get (thresholds and gates use it).", Default: "the family's name", Example: "latency_p99_ms"},

	"PrometheusQuery.url":         {Doc: "The Prometheus server (its API is <url>/api/v1/query). Required.", Example: `"http://prometheus:9090"`},
	"PrometheusQuery.queries":     {Doc: "Metric name → PromQL. A vector takes its highest element; an empty result or NaN is no sample. Required.", Example: `{error_rate: "sum(rate(http_errors_total[1m]))"}`},
	"PrometheusQuery.auth_env":    {Doc: "The NAME of the environment variable holding auth_header's value (e.g. \"Bearer …\").", Example: "PROMETHEUS_TOKEN"},
	"PrometheusQuery.auth_header": {Doc: "The header auth_env fills.", Default: DefaultAuthHeader, Example: "X-Api-Key"},

	"SystemSource.pid_file":  {Doc: "Sample this process (CPU and memory % of the host, RSS bytes) instead of the host.", Example: "/run/nginx.pid"},
	"SystemSource.disk_path": {Doc: "The filesystem of disk_usage (host only).", Default: "/", Example: "/var"},

	"AlertmanagerSource.match": {Doc: "Label → exact value the alert must have; at least one (without it any alert anywhere would roll back).", Example: "{service: estimator}"},

	"AutoRollback.metrics": {Doc: "The metrics whose breach of factor × threshold rolls back; [] turns auto-rollback off.", Default: "[api_response_time_p95, error_rate]", Example: "[error_rate]"},
	"AutoRollback.factor":  {Doc: "The factor, at least 1 (1.5: 150 % of the threshold).", Default: "1.5", Example: "2"},

	"Gate.max":           {Doc: "A value above it breaches. Set max or min.", Default: "the metric's threshold", Example: "2100"},
	"Gate.min":           {Doc: "A value below it breaches. Set max or min.", Example: "10"},
	"Gate.critical":      {Doc: "The critical bound: beyond it a breach is CRITICAL, between the bound and it WARNING.", Default: "bound × auto_rollback.factor for a gate that rolls back, else none", Example: "3150"},
	"Gate.for":           {Doc: "\"N of M\": the gate fails when N of the last M samples are critical; \"N\" is N of N.", Default: `"1 of 1"`, Example: `"3 of 5"`},
	"Gate.grace":         {Doc: "Samples in the first grace of the window are recorded, not judged.", Default: "0s", Example: "1m"},
	"Gate.no_data":       {Doc: "What no_data_after missing samples in a row mean: fail (a CRITICAL violation), warn or ignore.", Default: NoDataFail, Allowed: noDataPolicies, Example: NoDataWarn},
	"Gate.no_data_after": {Doc: "Missing samples in a row before no_data acts.", Default: "3", Example: "5"},
	"Gate.mode":          {Doc: "enforce or shadow (violations recorded, never a rollback).", Default: "monitor.mode", Allowed: gateModes, Example: ModeShadow},
	"Gate.rollback":      {Doc: "Whether a failed gate asks for a rollback.", Default: "the metric is in auto_rollback.metrics", Example: "true"},

	// --- test ---
	"Test.smoke":               {Doc: "Smoke tests run in order once the release serves; values captured by one are used by later ones as ${name}.", Example: `[{name: health, request: {url: "http://127.0.0.1:8080/health"}, expect: {status: 200}}]`},
	"Test.suites":              {Doc: "Named groups of smoke tests run after smoke, suite by suite; rollback_plan.verify re-runs them by name.", Example: `[{name: critical_paths, steps: [{name: health, request: {url: "http://127.0.0.1:8080/health"}}]}]`},
	"Test.load":                {Doc: "A load test run after the smoke tests pass (closed model: virtual users; open model: a rate), gated on latency percentiles and the error rate, compared with the last passing run.", Example: `{vus: 10, duration: 1m, requests: [{url: "http://127.0.0.1:8080/api"}]}`},
	"Test.rollback_on_failure": {Doc: "Whether a failed test asks for a rollback.", Default: "true", Example: "false"},
	"Test.secret_hosts":        {Doc: "The hosts (\"host\" or \"host:port\") a test request may send a value from the tester's environment to (${env:NAME}, headers_env); validate and the tester refuse any other.", Default: "none: no environment value is sent anywhere", Example: "[api.example.com]"},

	"SmokeSuite.name":  {Doc: "The suite's name (rollback_plan.verify names it). Required.", Example: "critical_paths"},
	"SmokeSuite.type":  {Doc: "The type of the suite's tests that set none.", Default: DefaultSmokeType, Allowed: smokeTypes, Example: "performance"},
	"SmokeSuite.steps": {Doc: "The suite's smoke tests, in order.", Example: `[{name: health, request: {url: "http://127.0.0.1:8080/health"}}]`},

	"SmokeTest.name":    {Doc: "The test's name in events and the report.", Default: "METHOD url", Example: "create estimate"},
	"SmokeTest.type":    {Doc: "The test's type, as the seed's report counts them.", Default: "the suite's type, else smoke", Allowed: smokeTypes, Example: "regression"},
	"SmokeTest.request": {Doc: "The request; ${name} takes a captured value, ${env:NAME} a tester environment variable (sent only to test.secret_hosts).", Example: `{method: POST, url: "http://127.0.0.1:8080/api/v1/login", json: {user: demo, password: "${env:SMOKE_PASSWORD}"}}`},
	"SmokeTest.expect":  {Doc: expectPhrase, Default: "any 2xx", Example: "{status: 200, json: {status: ok}}"},
	"SmokeTest.timeout": {Doc: "How long the request may take.", Default: "10s", Example: "5s"},
	"SmokeTest.capture": {Doc: "Name → where to take a value from the response, for later tests as ${name}: a JSON path, \"header:Name\", or {json|header, secret}. Captured values are secret (redacted in events) unless secret: false.", Example: "{token: $.token}"},
	"Capture":           {Doc: "A JSON path (\"$.token\"), \"header:Name\", or {json: PATH | header: NAME, secret: false} to show the value in events."},

	"Request.name":        {Doc: "Names a load-test request in the per-request latencies (smoke tests are named by their test's name).", Default: "METHOD path", Example: "estimates"},
	"Request.method":      {Doc: "The HTTP method.", Default: DefaultRequestMethod, Allowed: httpMethods, Example: "POST"},
	"Request.url":         {Doc: "An http:// or https:// URL (after ${...} expansion). Required.", Example: `"http://127.0.0.1:8080/api/v1/estimates"`},
	"Request.json":        {Doc: "The body as JSON (any YAML value). This or body.", Example: "{items: [1, 2]}"},
	"Request.body":        {Doc: "The body as text. This or json.", Example: `"a=1"`},
	"Request.headers":     {Doc: "Header → value.", Example: `{Authorization: "Bearer ${token}"}`},
	"Request.headers_env": {Doc: headersEnvDoc, Example: "{Authorization: TEST_TOKEN}"},

	"Expect.status":        {Doc: "The status that passes, 100..599.", Default: "any 2xx", Example: "200"},
	"Expect.max_ms":        {Doc: "The latency bound in milliseconds, request sent to last byte read.", Default: "none", Example: "500"},
	"Expect.json":          {Doc: "JSON path (dotted keys with array indexes, optional $. root) → the value it must have; \"*\": it must exist.", Example: `{$.release: v2.4.1, "data.items[0].id": "*"}`},
	"Expect.json_match":    {Doc: "JSON path → a regular expression (Go RE2) the value's text must match.", Example: "{build: '^2026'}"},
	"Expect.json_absent":   {Doc: "JSON paths that must not exist.", Example: "[error]"},
	"Expect.headers":       {Doc: "Header → its exact value; \"*\": it must be present.", Example: "{Content-Type: application/json}"},
	"Expect.headers_match": {Doc: "Header → a regular expression its value must match.", Example: "{Cache-Control: no-store}"},
	"Expect.body_contains": {Doc: "Texts the body must contain.", Example: "[ok]"},

	"LoadTest.vus":           {Doc: "Virtual users of the closed model, each sending the requests in order, then think_time.", Default: "50", Example: "10"},
	"LoadTest.duration":      {Doc: "How long the load runs.", Default: "5m", Example: "1m"},
	"LoadTest.requests":      {Doc: "One iteration's requests, in order. At least one.", Example: `[{name: health, url: "http://127.0.0.1:8080/health"}]`},
	"LoadTest.think_time":    {Doc: "The pause after each iteration (closed model); 0s for none.", Default: "1s", Example: "0s"},
	"LoadTest.gates":         {Doc: "What passes: p95, error rate, any percentile.", Default: "{p95_ms: 2100, error_rate: 0.01}", Example: "{p95_ms: 1500, error_rate: 0}"},
	"LoadTest.stages":        {Doc: "Ramp the closed model's virtual users instead of vus and duration (k6's stages): linear to each target.", Example: "[{duration: 30s, target: 50}, {duration: 30s, target: 0}]"},
	"LoadTest.rate":          {Doc: "Iterations started per second: the open model (no vus, stages or think_time then).", Example: "200"},
	"LoadTest.max_in_flight": {Doc: "The open model's bound on iterations at once; an arrival beyond it is dropped (an error).", Default: "1000", Example: "500"},
	"LoadTest.abort_early":   {Doc: "Stop once a gate has clearly failed (a 99.9 % Wilson interval wholly above it).", Default: "true", Example: "false"},
	"LoadTest.regression":    {Doc: "Compare the latencies with the last passing run of the same change or target (Mann-Whitney U).", Default: "{enabled: true, alpha: 0.01, effect_floor: 0.1}", Example: "{enabled: false}"},

	"LoadStage.duration": {Doc: "How long the ramp takes. Required.", Example: "30s"},
	"LoadStage.target":   {Doc: "The virtual users at the end of the ramp.", Example: "50"},

	"LoadRegression.enabled":      {Doc: "Whether the regression check runs.", Default: "true", Example: "false"},
	"LoadRegression.alpha":        {Doc: "The significance level, in (0, 1).", Default: "0.01", Example: "0.05"},
	"LoadRegression.effect_floor": {Doc: "The smallest slowdown that counts, relative to the baseline's median (0.1 = 10 %).", Default: "0.1", Example: "0.2"},

	"LoadGates.p95_ms":      {Doc: "The p95 latency limit in milliseconds.", Default: "2100", Example: "1500"},
	"LoadGates.error_rate":  {Doc: "The error-rate limit, a fraction 0..1 (0 = no error allowed).", Default: "0.01", Example: "0"},
	"LoadGates.percentiles": {Doc: "p<number> or max → its limit in milliseconds.", Example: "{p99: 3000, p99.9: 5000, max: 10000}"},

	// --- report ---
	"Report.notify": {Doc: "Where each report goes, once per run and destination; each sets exactly one of slack, webhook or email.", Example: "[{slack: {webhook_env: SLACK_WEBHOOK_URL}}]"},

	"Notify.slack":   {Doc: "A Slack incoming webhook: the seed's payload.", Example: "{webhook_env: SLACK_WEBHOOK_URL}"},
	"Notify.webhook": {Doc: "POST of the report JSON.", Example: `{url: "https://hooks.example.com/runbook"}`},
	"Notify.email":   {Doc: "The QC summary with the report attached, for runs that did not succeed or had issues.", Example: "{smtp_env: SMTP_URL, to: [ops@example.com]}"},
	"Notify.on":      {Doc: "When to tell: started (the deploy started) and/or final (the report). E-mail: final only.", Default: "[final]", Allowed: notifyOns, Example: "[started, final]"},

	"SlackNotify.webhook_env": {Doc: "The NAME of the environment variable holding the webhook URL. Required.", Example: "SLACK_WEBHOOK_URL"},
	"SlackNotify.when":        {Doc: "Which runs to tell about.", Default: NotifyAlways, Allowed: notifyWhens, Example: NotifyFailure},

	"WebhookNotify.url":  {Doc: "An http:// or https:// URL. Required.", Example: `"https://hooks.example.com/runbook"`},
	"WebhookNotify.when": {Doc: "Which runs to tell about.", Default: NotifyAlways, Allowed: notifyWhens, Example: NotifyFailure},

	"EmailNotify.smtp_env": {Doc: "The NAME of the environment variable holding smtp://user:pass@host:port?from=... Required.", Example: "SMTP_URL"},
	"EmailNotify.to":       {Doc: "Recipients. At least one.", Example: "[ops@example.com]"},
	"EmailNotify.when":     {Doc: "Which runs to tell about (e-mail is sent only for runs that did not succeed or had issues).", Default: NotifyAlways, Allowed: notifyWhens, Example: NotifyFailure},
}
