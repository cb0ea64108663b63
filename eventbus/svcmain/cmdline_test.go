package svcmain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/kis-core/runbook/eventbus/buildinfo"
	"github.com/kis-core/runbook/eventbus/cliconv"
)

// execute runs a service binary's command line as its main does.
func execute(t *testing.T, name string, flags func(*pflag.FlagSet), args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	build := func(Deps) (Service, error) { return nil, errors.New("build must not run in this test") }
	code := cliconv.Execute(context.Background(), Command(name, flags, build), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// --version prints the binary's name, version, commit and Go version
// (buildinfo, set by the Makefile's -ldflags) and exits 0: every service
// binary is Command, so this is each one's --version.
func TestVersion(t *testing.T) {
	oldV, oldC := buildinfo.Version, buildinfo.Commit
	t.Cleanup(func() { buildinfo.Version, buildinfo.Commit = oldV, oldC })
	buildinfo.Version, buildinfo.Commit = "v1.4.2", "0123456789abcdef"
	for _, name := range Services {
		code, out, errOut := execute(t, name, nil, "--version")
		want := name + " v1.4.2 (commit 0123456789ab"
		if code != 0 || !strings.HasPrefix(out, want) || !strings.Contains(out, runtime.Version()) || errOut != "" {
			t.Errorf("%s --version: exit %d, stdout %q, stderr %q; want %q… %s", name, code, out, errOut, want, runtime.Version())
		}
	}
}

// Usage errors exit 2 with one line naming what was wrong; --help exits 0.
func TestUsageErrorsExit2(t *testing.T) {
	var stateDir string
	own := func(fs *pflag.FlagSet) { fs.StringVar(&stateDir, "state-dir", "", "a service's own flag") }
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"--ack-wait", "soon"}, `invalid argument "soon" for "--ack-wait"`},
		{[]string{"--replicas"}, "flag needs an argument: --replicas"},
		{[]string{"extra-arg"}, `unknown command "extra-arg"`},
		{[]string{"--log-level", "loud"}, `--log-level "loud": want debug, info, warn or error`},
		// Go's flag package took long flags with one dash: still a flag.
		{[]string{"-log-level=loud"}, `--log-level "loud"`},
		{[]string{"-state-dir"}, "flag needs an argument: --state-dir"},
	} {
		code, out, errOut := execute(t, "deployer", own, c.args...)
		if code != cliconv.ExitUsage || !strings.Contains(errOut, c.want) || !strings.HasPrefix(errOut, "deployer: ") ||
			strings.Count(strings.TrimSpace(errOut), "\n") != 0 || out != "" {
			t.Errorf("deployer %v: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", c.args, code, out, errOut, c.want)
		}
	}
	code, out, _ := execute(t, "deployer", own, "--help")
	if code != 0 || !strings.Contains(out, "--state-dir") || !strings.Contains(out, "--nats-url") || !strings.Contains(out, "--version") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
}

// The logger writes durations as strings ("1.5s"), not slog's integer
// nanoseconds; a bad level is an error naming the flag.
func TestLoggerDurations(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger(&buf, "debug")
	if err != nil {
		t.Fatal(err)
	}
	log.With("service", "tester", "grace", 2*time.Minute).Debug("window", "took", 1500*time.Millisecond, "n", 3)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if line["took"] != "1.5s" || line["grace"] != "2m0s" || line["n"] != 3.0 || line["level"] != "DEBUG" {
		t.Errorf("log line %s", buf.String())
	}
	if _, err := NewLogger(&buf, "verbose"); err == nil || !strings.Contains(err.Error(), `--log-level "verbose"`) {
		t.Errorf("NewLogger(verbose): %v", err)
	}
}
