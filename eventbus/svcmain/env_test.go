package svcmain

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// helpEnv, when set, makes the test binary a service binary printing its
// --help (TestMain): how TestEnvIsReadByEveryService sees the flag
// defaults a real process takes from its environment.
const helpEnv = "SVCMAIN_TEST_PRINT_HELP"

func TestMain(m *testing.M) {
	if os.Getenv(helpEnv) == "1" {
		os.Args = []string{"deployer", "--help"}
		os.Exit(Main("deployer", func(Deps) (Service, error) { return nil, nil }))
	}
	os.Exit(m.Run())
}

// Every variable Env says all five services read is the default of its
// flag in a service binary's flag set.
func TestEnvIsReadByEveryService(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helpEnv+"=1")
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
		cmd.Env = append(cmd.Env, v.Name+"="+val)
		want[strings.TrimPrefix(v.Flag, "--")] = val
	}
	if len(want) < 8 {
		t.Fatalf("only %d variables read by every service: %v", len(want), want)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s --help: %v\n%s", os.Args[0], err, out)
	}
	got := flagDefaults(string(out))
	for flag, val := range want {
		if got[flag] != val {
			t.Errorf("-%s: default %q, want %q from its environment variable\n%s", flag, got[flag], val, out)
		}
	}
}

// flagDefaults reads flag.PrintDefaults output: flag name -> its default.
func flagDefaults(help string) map[string]string {
	out := map[string]string{}
	var flag string
	for _, line := range strings.Split(help, "\n") {
		if name, ok := strings.CutPrefix(line, "  -"); ok {
			flag, _, _ = strings.Cut(name, " ")
			continue
		}
		if flag == "" {
			continue
		}
		if i := strings.LastIndex(line, `(default "`); i >= 0 {
			out[flag] = strings.TrimSuffix(line[i+len(`(default "`):], `")`)
		}
	}
	return out
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
