package cliconv

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// docs/cli.md is partly generated from the binaries' real flag sets, so
// it cannot drift from them: each generated section sits between
//
//	<!-- generated: NAME -->
//	<!-- end: NAME -->
//
// and a test of the package that owns the flags compares it with what the
// flags say now (CheckDoc). UpdateDocsEnv=1 rewrites the section instead.

// UpdateDocsEnv, set to 1, makes CheckDoc rewrite stale sections.
const UpdateDocsEnv = "RUNBOOK_UPDATE_DOCS"

// FlagTable is a Markdown table of fs's flags (hidden ones left out):
// the flag, its default and its help, which names its environment
// variable when it has one.
func FlagTable(fs *pflag.FlagSet) string {
	var b strings.Builder
	b.WriteString("| flag | default | what |\n|---|---|---|\n")
	n := 0
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		n++
		name := "`--" + f.Name + "`"
		if f.Shorthand != "" {
			name = "`-" + f.Shorthand + "`, " + name
		}
		if t := f.Value.Type(); t != "bool" {
			name += " " + t
		}
		def := f.DefValue
		switch {
		case f.Value.Type() == "bool" && def == "false", def == "", def == "[]":
			def = ""
		default:
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, def, cell(f.Usage))
	})
	if n == 0 {
		return "(no flags of its own)\n"
	}
	return b.String()
}

// cell escapes text for a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// CheckDoc compares the generated section name of the Markdown file path
// with body. It returns an error naming the section when they differ
// (or rewrites it under RUNBOOK_UPDATE_DOCS=1).
func CheckDoc(path, name, body string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	begin, end := "<!-- generated: "+name+" -->\n", "<!-- end: "+name+" -->"
	i := bytes.Index(data, []byte(begin))
	j := bytes.Index(data, []byte(end))
	if i < 0 || j < i {
		return fmt.Errorf("%s has no section %q: add the lines %q and %q where it belongs", path, name, strings.TrimSpace(begin), end)
	}
	start := i + len(begin)
	if string(data[start:j]) == body {
		return nil
	}
	if os.Getenv(UpdateDocsEnv) == "1" {
		out := append(append(append([]byte{}, data[:start]...), body...), data[j:]...)
		return os.WriteFile(path, out, 0o644)
	}
	return fmt.Errorf("%s: the generated section %q is stale (the flags changed): rerun this test with %s=1 and commit the file", path, name, UpdateDocsEnv)
}
