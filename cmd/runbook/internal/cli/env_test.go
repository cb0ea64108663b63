package cli

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kis-core/runbook/eventbus/svcmain"
)

// eachFlag calls fn for every flag of every command of the tree, with the
// command's path.
func eachFlag(c *cobra.Command, fn func(path string, f *pflag.Flag)) {
	c.LocalFlags().VisitAll(func(f *pflag.Flag) { fn(c.CommandPath(), f) })
	for _, sub := range c.Commands() {
		eachFlag(sub, fn)
	}
}

// Every variable svcmain.Env says the runbook command reads for a flag is
// that flag's default wherever the flag is, once the variable is set, and
// the flag's help names it.
func TestEnvIsReadByRunbook(t *testing.T) {
	want := map[string]string{} // flag -> value
	names := map[string]string{}
	for _, v := range svcmain.Env() {
		if v.Flag == "" || !slices.Contains(v.Binaries, svcmain.Runbook) {
			continue
		}
		val := "from-env-" + strings.ToLower(v.Name)
		t.Setenv(v.Name, val)
		want[strings.TrimPrefix(v.Flag, "--")] = val
		names[strings.TrimPrefix(v.Flag, "--")] = v.Name
	}
	if len(want) < 10 {
		t.Fatalf("only %d variables read by runbook: %v", len(want), want)
	}
	root := newRoot(&globals{in: strings.NewReader(""), out: io.Discard, errOut: io.Discard})
	found := map[string]int{}
	eachFlag(root, func(path string, f *pflag.Flag) {
		val, ok := want[f.Name]
		if !ok {
			return
		}
		found[f.Name]++
		if f.DefValue != val {
			t.Errorf("%s --%s: default %q, want %q from %s", path, f.Name, f.DefValue, val, names[f.Name])
		}
		if !strings.Contains(f.Usage, "env "+names[f.Name]) {
			t.Errorf("%s --%s: its help does not name %s: %q", path, f.Name, names[f.Name], f.Usage)
		}
	})
	for flag := range want {
		if found[flag] == 0 {
			t.Errorf("--%s (env %s): no runbook command has it", flag, names[flag])
		}
	}
}
