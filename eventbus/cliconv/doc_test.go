package cliconv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// CheckDoc fails on a stale or missing section and rewrites it under
// RUNBOOK_UPDATE_DOCS=1, leaving the rest of the page alone.
func TestCheckDoc(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.StringP("output", "o", "table", "output format; env X_OUTPUT")
	fs.Bool("quiet", false, "say less | or nothing")
	fs.String("old", "", "gone")
	_ = fs.MarkHidden("old")
	body := FlagTable(fs)
	want := "| flag | default | what |\n|---|---|---|\n" +
		"| `-o`, `--output` string | `table` | output format; env X_OUTPUT |\n" +
		"| `--quiet` |  | say less \\| or nothing |\n"
	if body != want {
		t.Fatalf("FlagTable:\n%s\nwant\n%s", body, want)
	}

	path := filepath.Join(t.TempDir(), "cli.md")
	page := "# page\n<!-- generated: x -->\nold table\n<!-- end: x -->\ntail\n"
	if err := os.WriteFile(path, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckDoc(path, "x", body); err == nil || !strings.Contains(err.Error(), `section "x" is stale`) {
		t.Errorf("stale section: %v", err)
	}
	if err := CheckDoc(path, "y", body); err == nil || !strings.Contains(err.Error(), `no section "y"`) {
		t.Errorf("missing section: %v", err)
	}
	t.Setenv(UpdateDocsEnv, "1")
	if err := CheckDoc(path, "x", body); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	if string(got) != "# page\n<!-- generated: x -->\n"+body+"<!-- end: x -->\ntail\n" {
		t.Errorf("rewritten page:\n%s", got)
	}
	t.Setenv(UpdateDocsEnv, "")
	if err := CheckDoc(path, "x", body); err != nil {
		t.Errorf("after the rewrite: %v", err)
	}
}
