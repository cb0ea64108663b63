package cli_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/eventbus/svcmain"
)

// Every variable svcmain.Env says the runbook command reads for a flag is
// that flag's default in one of its commands (serve, audit verify, replay:
// between them every such flag), as --help shows it.
func TestEnvIsReadByRunbook(t *testing.T) {
	want := map[string]string{} // flag -> value
	for _, v := range svcmain.Env() {
		if v.Flag == "" || !slices.Contains(v.Binaries, svcmain.Runbook) {
			continue
		}
		val := "from-env-" + strings.ToLower(v.Name)
		t.Setenv(v.Name, val)
		want[v.Flag] = val
	}
	if len(want) < 8 {
		t.Fatalf("only %d variables read by runbook: %v", len(want), want)
	}
	var help strings.Builder
	for _, args := range [][]string{{"serve", "--help"}, {"audit", "verify", "--help"}, {"replay", "--help"}} {
		var out, errOut bytes.Buffer
		if code := cli.Execute(context.Background(), args, &out, &errOut); code != 0 {
			t.Fatalf("runbook %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
		}
		help.WriteString(out.String())
	}
	for flag, val := range want {
		found := false
		for _, line := range strings.Split(help.String(), "\n") {
			if strings.Contains(line, flag+" ") && strings.Contains(line, `(default "`+val+`")`) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s: no command shows default %q, the value of its environment variable\n%s", flag, val, help.String())
		}
	}
}
