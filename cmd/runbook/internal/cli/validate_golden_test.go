package cli_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
)

// go test ./cmd/runbook/internal/cli/ -run Golden -update   rewrites the
// golden files; review the diff before committing it.
var update = flag.Bool("update", false, "rewrite testdata/**/*.golden from the current output")

// validateOutput is what an operator sees from `runbook validate path`:
// stdout, then stderr, then the exit code.
func validateOutput(path string) string {
	var out, errOut bytes.Buffer
	code := cli.Execute(context.Background(), []string{"validate", path}, &out, &errOut)
	return fmt.Sprintf("%s--- stderr ---\n%s--- exit code %d ---\n", out.String(), errOut.String(), code)
}

func checkGolden(t *testing.T, golden, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run the test with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("`runbook validate` output differs from %s (-update rewrites it):\n--- got ---\n%s--- want ---\n%s", golden, got, want)
	}
}

// TestValidateGolden: each broken plan under testdata/validate prints the
// expected message — file:line:col, level, field path, message and the
// value written — exactly, and exits 1. Paths are relative to this
// package's directory so that the output is the same on every machine.
func TestValidateGolden(t *testing.T) {
	t.Parallel()
	plans, err := filepath.Glob("testdata/validate/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) < 12 {
		t.Fatalf("%d broken plans under testdata/validate, want 12 or more", len(plans))
	}
	for _, path := range plans {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			t.Parallel()
			got := validateOutput(path)
			if !strings.HasSuffix(got, "--- exit code 1 ---\n") {
				t.Errorf("a broken plan must exit 1:\n%s", got)
			}
			if !strings.Contains(got, path+":") || !strings.Contains(got, ": error: ") {
				t.Errorf("no error line naming %s:\n%s", path, got)
			}
			checkGolden(t, strings.TrimSuffix(path, ".yaml")+".golden", got)
		})
	}
}

// TestValidateSeedTemplate: the seed's change_plan_template.yml, byte for
// byte (domain/plan pins its sha256), is valid; the warnings say what it
// will not run and the risks are scored on the seed's matrix with the
// template's words mapped.
func TestValidateSeedTemplate(t *testing.T) {
	t.Parallel()
	const seed = "../../../../domain/plan/testdata/seed_template.yml"
	got := validateOutput(seed)
	for _, want := range []string{
		// Valid, with warnings.
		"--- exit code 0 ---",
		seed + " is valid (5 warning(s)).",
		// What it will not run: text-only rollback steps.
		seed + ":66:5: warning: rollback_plan.rollback_steps: rollback steps are written as one text, read as 5 described manual step(s)",
		// Approval statuses written in the YAML are never trusted.
		seed + `:77:13: warning: approval.technical_approval.status: status "pending": never trusted`,
		seed + `:82:13: warning: approval.business_approval.status: status "approved" and timestamp "2025-09-22T10:30:00Z": never trusted`,
		seed + `:87:13: warning: approval.security_approval.status: status "approved" and timestamp "2025-09-22T11:00:00Z": never trusted`,
		"approvals exist only as `runbook approve` events",
		// No deploy steps: nothing executable.
		seed + ": warning: deploy.steps: nothing executable",
		// Risks on the seed's matrix, the template's words mapped.
		`R001 "`, ": 2 × 4 = 8 MEDIUM",
		`scored: probability "low" = 2; impact "high" (template word) scored as major = 4`,
		`R002 "`, ": 3 × 3 = 9 MEDIUM",
		`scored: probability "medium" = 3; impact "medium" (template word) scored as moderate = 3`,
		"overall: MEDIUM (max score 9); executive approval not required",
		// The approvals it needs, whatever the YAML says.
		"- business_approval",
		"- security_approval",
		"- technical_approval",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("validate %s lacks %q", seed, want)
		}
	}
	checkGolden(t, "testdata/seed_template.golden", got)
}

// TestValidateDescribeGolden: each valid plan under testdata/describe prints
// the plan as it will run — monitor sources, baseline, each metric's
// effective gate, the auto-rollback rule, the load model and its gates —
// exactly, and exits 0.
func TestValidateDescribeGolden(t *testing.T) {
	t.Parallel()
	plans, err := filepath.Glob("testdata/describe/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) == 0 {
		t.Fatal("no plans under testdata/describe")
	}
	for _, path := range plans {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			t.Parallel()
			got := validateOutput(path)
			if !strings.HasSuffix(got, "--- exit code 0 ---\n") {
				t.Errorf("a valid plan must exit 0:\n%s", got)
			}
			for _, section := range []string{"\nMONITOR\n", "\nTEST\n"} {
				if !strings.Contains(got, section) {
					t.Errorf("no %q section:\n%s", strings.TrimSpace(section), got)
				}
			}
			checkGolden(t, strings.TrimSuffix(path, ".yaml")+".golden", got)
		})
	}
}
