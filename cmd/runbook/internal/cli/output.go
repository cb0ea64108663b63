package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/mattn/go-runewidth"
	"github.com/spf13/cobra"

	"github.com/kis-core/runbook/eventbus/cliconv"
)

// The one home of how read commands print: -o table|json|yaml, the
// width-aware table, and times.

// Output formats of -o/--output.
const (
	formatTable = "table"
	formatJSON  = "json"
	formatYAML  = "yaml"
)

var outputFormats = []string{formatTable, formatJSON, formatYAML}

// outputFlag adds -o/--output to a read command, with def as its default
// and shell completion of the formats; what says what "table" prints.
func outputFlag(c *cobra.Command, o *string, def, what string) {
	c.Flags().StringVarP(o, "output", "o", def, "output format: table ("+what+"), json or yaml")
	_ = c.RegisterFlagCompletionFunc("output", fixedCompletions(outputFormats...))
}

// checkFormat is -o's value checked: a usage error names the value and
// the formats.
func checkFormat(f string) error {
	for _, ok := range outputFormats {
		if f == ok {
			return nil
		}
	}
	return cliconv.Usage(fmt.Errorf("-o/--output %q: want table, json or yaml", f))
}

// render prints v as format: json (indented), yaml (the same document:
// the JSON converted, so both have the same field names), or table, which
// table prints.
func render(w io.Writer, format string, v any, table func() error) error {
	switch format {
	case formatJSON:
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("encode the output as JSON: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case formatYAML:
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode the output as JSON: %w", err)
		}
		return writeJSONAsYAML(w, b)
	default:
		return table()
	}
}

// writeJSONAsYAML prints a JSON document as YAML, keys in their order.
func writeJSONAsYAML(w io.Writer, js []byte) error {
	y, err := yaml.JSONToYAML(js)
	if err != nil {
		return fmt.Errorf("convert the output to YAML: %w", err)
	}
	_, err = w.Write(y)
	return err
}

// table is a text table whose columns line up by display width: a Korean
// or Chinese character takes two columns of a terminal (text/tabwriter
// counts it as one and misaligns every row after it).
type table struct {
	rows [][]string
}

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

// write prints the rows, columns two spaces apart; the last column is not
// padded.
func (t *table) write(w io.Writer) error {
	var widths []int
	for _, r := range t.rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], runewidth.StringWidth(c))
		}
	}
	var b strings.Builder
	for _, r := range t.rows {
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-runewidth.StringWidth(c)+2))
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Time layouts: ISO 8601, UTC ("Z") unless --local.
const (
	isoSeconds = "2006-01-02T15:04:05Z07:00"
	isoMillis  = "2006-01-02T15:04:05.000Z07:00"
)

// clock is t in layout: UTC, or the local zone with its offset under
// --local. The zero time is "-".
func (g *globals) clock(t time.Time, layout string) string {
	if t.IsZero() {
		return "-"
	}
	if g.local {
		return t.Local().Format(layout)
	}
	return t.UTC().Format(layout)
}

// fixedCompletions completes a flag or argument from a fixed list.
func fixedCompletions(values ...string) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}
