package svcmain

import "slices"

// The environment variables runbook's binaries read, in one place: every
// flag that takes its default from the environment names its variable by
// one of these constants (here, in the tester's and the reporter's main,
// and in the runbook command), and Env says which binaries read each.
// cmd/runbook/internal/deploycheck checks every variable deploy/compose
// sets against Env, so a renamed variable cannot silently stop being read
// (compose once passed RUNBOOK_POSTGRES_URL to a reporter that reads
// RUNBOOK_DATABASE_URL, and the reporter kept its read model in memory).
//
// Not listed: the variables a plan names (*_env fields, ${env:NAME}; see
// plan.SecretEnv) and those the reporter's --notify-slack-env and
// --notify-smtp-env name, which the services read by the name given.
const (
	EnvNATSURL        = "RUNBOOK_NATS_URL"
	EnvMetricsListen  = "RUNBOOK_METRICS_LISTEN"
	EnvInstance       = "RUNBOOK_INSTANCE"
	EnvCreds          = "RUNBOOK_CREDS"
	EnvKeyring        = "RUNBOOK_KEYRING"
	EnvTLSCA          = "RUNBOOK_TLS_CA"
	EnvTLSCert        = "RUNBOOK_TLS_CERT"
	EnvTLSKey         = "RUNBOOK_TLS_KEY"
	EnvDatabaseURL    = "RUNBOOK_DATABASE_URL"
	EnvReportsDir     = "RUNBOOK_REPORTS_DIR"
	EnvLoadSummaryDir = "RUNBOOK_LOAD_SUMMARY_DIR"
	EnvStateDir       = "RUNBOOK_STATE_DIR"
	EnvOperator       = "RUNBOOK_OPERATOR"
	EnvLogLevel       = "RUNBOOK_LOG_LEVEL"
)

// The binaries: the five services (services/<name>/cmd/<name>, each
// through Main) and Runbook, the runbook command (serve, provision and the
// CLI commands).
const (
	Preflight = "preflight"
	Deployer  = "deployer"
	Monitor   = "monitor"
	Tester    = "tester"
	Reporter  = "reporter"
	Runbook   = "runbook"
)

// Services are the five service binaries.
var Services = []string{Preflight, Deployer, Monitor, Tester, Reporter}

// EnvVar is one environment variable and the binaries that read it.
type EnvVar struct {
	Name string
	// Flag is the flag it is the default of ("" for none).
	Flag     string
	Binaries []string
}

// Env lists every variable runbook's binaries read for their own settings.
func Env() []EnvVar {
	services := func(extra ...string) []string { return append(slices.Clone(Services), extra...) }
	return []EnvVar{
		{EnvNATSURL, "--nats-url", services(Runbook)},
		{EnvMetricsListen, "--metrics-listen", services()},
		{EnvInstance, "--instance", services(Runbook)},
		{EnvCreds, "--creds", services(Runbook)},
		{EnvKeyring, "--keyring", services(Runbook)},
		{EnvTLSCA, "--tls-ca", services(Runbook)},
		{EnvTLSCert, "--tls-cert", services(Runbook)},
		{EnvTLSKey, "--tls-key", services(Runbook)},
		{EnvDatabaseURL, "--database-url", []string{Reporter, Runbook}},
		{EnvReportsDir, "--reports-dir", []string{Reporter, Runbook}},
		{EnvLoadSummaryDir, "--load-summary-dir", []string{Tester, Runbook}},
		{EnvLogLevel, "--log-level", services(Runbook)},
		{EnvStateDir, "--state-dir", []string{Deployer}},
		{EnvOperator, "--as", []string{Runbook}},
	}
}

// ReadBy reports whether binary reads the variable name (one of Env).
func ReadBy(binary, name string) bool {
	for _, v := range Env() {
		if v.Name == name {
			return slices.Contains(v.Binaries, binary)
		}
	}
	return false
}
