package deploycheck_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kis-core/runbook/cmd/runbook/internal/deploycheck"
	"github.com/kis-core/runbook/eventbus/svcmain"
)

// systemdAnalyze finds systemd-analyze (Debian's systemd package, which
// .ci/run installs): missing, the test fails under CI=true and is skipped
// loudly otherwise.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("systemd-analyze"); err == nil {
		return p
	}
	msg := "systemd-analyze is not installed: apt-get install systemd"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED (not CI): " + msg)
	return ""
}

// units reads deploy/systemd: its units and its example environment files.
func units(t *testing.T) (map[string][]byte, map[string][]string) {
	t.Helper()
	dir := filepath.Join(repoRoot(t), "deploy", "systemd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	unitFiles, envFiles := map[string][]byte{}, map[string][]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		switch filepath.Ext(e.Name()) {
		case ".service":
			unitFiles[e.Name()] = b
		case ".env":
			envFiles[e.Name()] = deploycheck.EnvFileNames(b)
		}
	}
	return unitFiles, envFiles
}

// There is a unit for each of the five services and one for runbook serve;
// each runs its binary; every variable a unit sets, itself or through its
// example environment file, is one its binary reads (or its ExecStart
// uses).
func TestSystemdUnitsRunTheirBinaryWithItsVariables(t *testing.T) {
	unitFiles, envFiles := units(t)
	want := map[string]string{"runbook-serve.service": svcmain.Runbook}
	for _, s := range svcmain.Services {
		want["runbook-"+s+".service"] = s
	}
	for name, bin := range want {
		data, ok := unitFiles[name]
		if !ok {
			t.Errorf("deploy/systemd/%s is missing", name)
			continue
		}
		u, err := deploycheck.ParseUnit(name, data)
		if err != nil {
			t.Fatal(err)
		}
		if u.Binary != bin {
			t.Errorf("%s runs %q, want %s", name, u.Binary, bin)
		}
		for _, p := range deploycheck.UnreadUnitEnv(u, envFiles) {
			t.Error(p)
		}
	}
	if len(unitFiles) != len(want) {
		t.Errorf("deploy/systemd has %d units, want %d", len(unitFiles), len(want))
	}
	// The check catches a variable nothing reads.
	u, _ := deploycheck.ParseUnit("x.service", []byte("[Service]\nExecStart=/usr/local/bin/monitor\nEnvironment=RUNBOOK_DATABASE_URL=x\n"))
	if got := deploycheck.UnreadUnitEnv(u, nil); len(got) != 1 || !strings.Contains(got[0], "RUNBOOK_DATABASE_URL") {
		t.Errorf("a monitor unit setting RUNBOOK_DATABASE_URL: %q", got)
	}
}

// `systemd-analyze verify` accepts every unit with no warning, run on
// copies whose ExecStart points at the binaries built from this tree (it
// checks the program exists and is executable).
func TestSystemdUnitsVerify(t *testing.T) {
	analyze := systemdAnalyze(t)
	root := repoRoot(t)
	bin := t.TempDir()
	pkgs := []string{"./cmd/runbook"}
	for _, s := range svcmain.Services {
		pkgs = append(pkgs, "./services/"+s+"/cmd/"+s)
	}
	build := exec.Command("go", append([]string{"build", "-o", bin + "/"}, pkgs...)...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	unitFiles, _ := units(t)
	dir := t.TempDir()
	var paths []string
	for name, data := range unitFiles {
		if !strings.Contains(string(data), "ExecStart=/usr/local/bin/") {
			t.Errorf("%s: ExecStart is not in /usr/local/bin", name)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(data), "/usr/local/bin/", bin+"/")), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	slices.Sort(paths)
	out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// verify exits 0 on a key it ignores: any output is a finding.
	bad := filepath.Join(dir, "bad.service")
	if err := os.WriteFile(bad, []byte("[Service]\nExecStart="+bin+"/monitor\nProtectSystem=sometimes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command(analyze, "verify", "--man=no", bad).CombinedOutput(); !strings.Contains(string(out), "ProtectSystem") && !strings.Contains(string(out), "protect system") {
		t.Errorf("systemd-analyze verify says nothing of a bad ProtectSystem=: %q", out)
	}
}
