package main

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/kis-core/runbook/eventbus/buildinfo"
	"github.com/kis-core/runbook/eventbus/cliconv"
)

// The estimator follows runbook's conventions: --version names version,
// commit and Go version; a usage error exits 2.
func TestVersionAndUsage(t *testing.T) {
	oldV, oldC := buildinfo.Version, buildinfo.Commit
	t.Cleanup(func() { buildinfo.Version, buildinfo.Commit = oldV, oldC })
	buildinfo.Version, buildinfo.Commit = "v0.3.0", "abcdef0123456789"
	var out, errOut bytes.Buffer
	code := cliconv.Execute(context.Background(), command(), []string{"--version"}, &out, &errOut)
	if want := "estimator v0.3.0 (commit abcdef012345, " + runtime.Version() + ")\n"; code != 0 || out.String() != want {
		t.Errorf("--version: exit %d %q, want %q", code, out.String(), want)
	}
	out.Reset()
	code = cliconv.Execute(context.Background(), command(), []string{"--listen"}, &out, &errOut)
	if code != cliconv.ExitUsage || !strings.Contains(errOut.String(), "flag needs an argument: --listen") {
		t.Errorf("--listen without a value: exit %d %q", code, errOut.String())
	}
}
