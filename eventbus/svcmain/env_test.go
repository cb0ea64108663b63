package svcmain

import (
	"strings"
	"testing"

	"github.com/kis-core/runbook/eventbus/cliconv"
)

// Every variable Env says all five services read is the default of its
// flag in a service binary's flag set, built as the binary builds it
// after the variables are set.
func TestEnvIsReadByEveryService(t *testing.T) {
	want := map[string]string{} // flag -> value
	for _, v := range Env() {
		if !containsAll(v.Binaries, Services) {
			continue
		}
		if v.Flag == "" {
			t.Errorf("%s: read by every service but names no flag", v.Name)
			continue
		}
		val := "from-env-" + strings.ToLower(v.Name)
		t.Setenv(v.Name, val)
		want[strings.TrimPrefix(v.Flag, "--")] = val
	}
	if len(want) < 9 {
		t.Fatalf("only %d variables read by every service: %v", len(want), want)
	}
	for _, name := range Services {
		fs := Command(name, nil, nil).Flags()
		for flag, val := range want {
			f := fs.Lookup(flag)
			if f == nil {
				t.Errorf("%s: no flag --%s", name, flag)
				continue
			}
			if f.DefValue != val {
				t.Errorf("%s --%s: default %q, want %q from its environment variable", name, flag, f.DefValue, val)
			}
			if !strings.Contains(f.Usage, "env ") {
				t.Errorf("%s --%s: its help does not name its environment variable: %q", name, flag, f.Usage)
			}
		}
	}
}

// docs/cli.md's tables of the variables and of the flags every service
// shares are these, generated (cliconv.CheckDoc).
func TestDocs(t *testing.T) {
	const doc = "../../docs/cli.md"
	for _, v := range Env() {
		t.Setenv(v.Name, "")
	}
	if err := cliconv.CheckDoc(doc, "env", EnvTable()); err != nil {
		t.Error(err)
	}
	if err := cliconv.CheckDoc(doc, "service-flags", cliconv.FlagTable(SharedFlags("<service>"))); err != nil {
		t.Error(err)
	}
}
