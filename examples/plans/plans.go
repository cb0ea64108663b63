// Package plans embeds runbook's example change plans: the demo's
// good.yaml and bad-release.yaml, which tests in any module run against
// their own estimator (examples/estimator) with Render, and minimal.yaml,
// the plan for a plain HTTP service that `runbook init` writes (Init).
package plans

import (
	"embed"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

//go:embed *.yaml
var files embed.FS

// The example plans.
const (
	Good       = "good.yaml"        // ends SUCCESS
	BadRelease = "bad-release.yaml" // ends ROLLED_BACK
	Minimal    = "minimal.yaml"     // runbook init's plan
)

// What the plans are written against, and what Render replaces.
const (
	// Addr is the estimator's host:port in every URL and in the tcp check.
	Addr = "127.0.0.1:18080"
	// URL is the estimator's base URL.
	URL = "http://" + Addr
	// StateDir is the estimator's state dir, relative to the repo root
	// (the working directory of `make demo`).
	StateDir = ".demo/estimator"
)

// Names are the demo plans' file names (run against the estimator).
func Names() []string { return []string{Good, BadRelease} }

// All are every example plan's file names.
func All() []string { return []string{Good, BadRelease, Minimal} }

// Source is an example plan as written.
func Source(name string) ([]byte, error) {
	b, err := files.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("example plan %q: %w", name, err)
	}
	return b, nil
}

// Render is an example plan pointed at an estimator listening on addr
// (host:port, e.g. an httptest server's) with its state in stateDir (best
// absolute, since step commands run in the deployer's working directory).
func Render(name, addr, stateDir string) ([]byte, error) {
	b, err := Source(name)
	if err != nil {
		return nil, err
	}
	for _, s := range []string{addr, stateDir} {
		if s == "" || strings.ContainsAny(s, "\"\\\n") {
			return nil, fmt.Errorf("example plan %q: %q cannot be put in a quoted YAML string", name, s)
		}
	}
	out := strings.ReplaceAll(string(b), Addr, addr)
	out = strings.ReplaceAll(out, StateDir, stateDir)
	return []byte(out), nil
}

// What minimal.yaml is written for, and what Init replaces.
const (
	InitName   = "my-service"
	InitURL    = "http://127.0.0.1:8080"
	InitHealth = "/health"
)

// SchemaLine is the first line of every example plan: editors with a YAML
// language server check the plan against docs/plan.schema.json.
const SchemaLine = "# yaml-language-server: $schema=../../docs/plan.schema.json"

// initSchemaNote replaces SchemaLine in a plan written elsewhere, where
// that relative path leads nowhere.
const initSchemaNote = `# For checks as you type in an editor with a YAML language server:
#   runbook schema > plan.schema.json
# and make the first line of this file
#   ` + "# yaml-language-server: $schema=plan.schema.json"

var serviceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Init is minimal.yaml for the service name, listening on baseURL (http or
// https, e.g. http://127.0.0.1:8080) and answering its health check on
// healthPath (e.g. /health): the plan `runbook init` writes.
func Init(name, baseURL, healthPath string) ([]byte, error) {
	if !serviceName.MatchString(name) {
		return nil, fmt.Errorf("--name %q: use letters, digits, '.', '_' and '-', starting with a letter or digit (e.g. estimator)", name)
	}
	baseURL = strings.TrimRight(baseURL, "/")
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(baseURL, "\"\\' \n") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--url %q: write the service's base URL, http:// or https:// with a host, e.g. http://127.0.0.1:8080", baseURL)
	}
	if !strings.HasPrefix(healthPath, "/") || strings.ContainsAny(healthPath, "\"\\' \n#") {
		return nil, fmt.Errorf("--health %q: write the path of the service's health check, starting with /, e.g. /health", healthPath)
	}
	b, err := Source(Minimal)
	if err != nil {
		return nil, err
	}
	out := string(b)
	if !strings.HasPrefix(out, SchemaLine+"\n") {
		return nil, fmt.Errorf("example plan %s: the first line is not %q", Minimal, SchemaLine)
	}
	out = initSchemaNote + strings.TrimPrefix(out, SchemaLine)
	out = strings.ReplaceAll(out, InitURL+InitHealth, baseURL+healthPath)
	out = strings.ReplaceAll(out, InitURL, baseURL)
	out = strings.ReplaceAll(out, InitName, name)
	return []byte(out), nil
}
