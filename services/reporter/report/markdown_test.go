package report

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMarkdownGolden renders the reports of TestReportGolden's runs as
// Markdown and compares them with testdata/*.md (go test -run
// TestMarkdownGolden -update rewrites them).
func TestMarkdownGolden(t *testing.T) {
	t.Parallel()
	for name, h := range map[string]*history{
		"success":          successRun(),
		"rolled_back":      rolledBackRun(),
		"preflight_failed": preflightFailedRun(),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			res := generate(t, h)
			md := Markdown(&res.Report, res.QCSummary)
			if md != Markdown(&res.Report, res.QCSummary) {
				t.Fatal("Markdown is not deterministic")
			}
			golden := filepath.Join("testdata", name+".md")
			if *update {
				if err := os.WriteFile(golden, []byte(md), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("golden file (run with -update to create): %v", err)
			}
			if md != string(want) {
				t.Errorf("markdown differs from %s:\n%s", golden, md)
			}
			if !strings.Contains(md, "```\n"+res.QCSummary+"\n```\n") {
				t.Error("the QC summary is not in a code block")
			}
		})
	}
}

func TestMarkdownEscapesCells(t *testing.T) {
	t.Parallel()
	r := &Report{Issues: []Issue{{Severity: SeverityCritical, Type: "DEPLOY", Message: "a | b\nc"}}}
	md := Markdown(r, "")
	if !strings.Contains(md, `a \| b<br>c`) {
		t.Errorf("cell not escaped:\n%s", md)
	}
}
