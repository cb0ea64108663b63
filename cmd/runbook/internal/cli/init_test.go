package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runbook init writes a plan that runbook validate accepts as written,
// without a warning; it keeps an existing file unless --force.
func TestInitWritesAPlanThatValidates(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "plan.yaml")
	code, out, errOut := run(t, "init", "--name", "billing", "--url", "http://10.1.2.3:9000", "--health", "/healthz", "-f", file)
	if code != 0 || !strings.Contains(out, "wrote "+file) || !strings.Contains(out, "runbook validate "+file) {
		t.Fatalf("init: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(t, "validate", file)
	if code != 0 || !strings.Contains(out, file+" is valid (0 warning(s))") {
		t.Fatalf("validate the new plan: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"http://10.1.2.3:9000/healthz", "deploy billing"} {
		if !strings.Contains(out, want) {
			t.Errorf("the plan as it will run lacks %q:\n%s", want, out)
		}
	}

	// An existing plan is kept.
	if err := os.WriteFile(file, []byte("mine\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run(t, "init", "-f", file)
	if code != 2 || !strings.Contains(errOut, file+" exists") || !strings.Contains(errOut, "--force") {
		t.Fatalf("init over an existing file: exit %d, %q", code, errOut)
	}
	if b, _ := os.ReadFile(file); string(b) != "mine\n" {
		t.Fatalf("init overwrote the file: %q", b)
	}
	if code, _, errOut = run(t, "init", "-f", file, "--force"); code != 0 {
		t.Fatalf("init --force: exit %d %s", code, errOut)
	}
	if code, _, _ = run(t, "validate", file); code != 0 {
		t.Fatalf("validate after init --force: exit %d", code)
	}

	// To standard output; bad flags name themselves.
	code, out, _ = run(t, "init", "-f", "-")
	if code != 0 || !strings.Contains(out, "change_request:") || !strings.Contains(out, "http://127.0.0.1:8080/health") {
		t.Fatalf("init -f -: exit %d\n%s", code, out)
	}
	code, _, errOut = run(t, "init", "--url", "localhost:8080", "-f", "-")
	if code != 2 || !strings.Contains(errOut, `--url "localhost:8080"`) {
		t.Fatalf("init with a bad --url: exit %d, %q", code, errOut)
	}
}

// runbook schema prints docs/plan.schema.json byte for byte.
func TestSchemaPrintsTheCommittedSchema(t *testing.T) {
	t.Parallel()
	code, out, errOut := run(t, "schema")
	if code != 0 {
		t.Fatalf("schema: exit %d %s", code, errOut)
	}
	want, err := os.ReadFile("../../../../docs/plan.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Fatal("runbook schema differs from docs/plan.schema.json (regenerate: go run ./domain/plan/planschema/gen)")
	}
}
