// Package plans embeds runbook's example change plans (good.yaml,
// bad-release.yaml) so that tests in any module can run them against their
// own estimator (examples/estimator) with Render.
package plans

import (
	"embed"
	"fmt"
	"strings"
)

//go:embed *.yaml
var files embed.FS

// The example plans.
const (
	Good       = "good.yaml"        // ends SUCCESS
	BadRelease = "bad-release.yaml" // ends ROLLED_BACK
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

// Names are the example plans' file names.
func Names() []string { return []string{Good, BadRelease} }

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
