package cli

import (
	"strings"

	"github.com/kis-core/runbook/domain/vocab"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// watchTextColumn is where `runbook watch` prints an event's text: after
// "%8s  %-10s " (the time since the run began and the phase).
const watchTextColumn = 21

// Describe is the phase of one event and its sentence (domain/vocab, the
// one vocabulary the dashboard uses too), laid out for `runbook watch`: the
// lines after the first indented under the text column.
func Describe(ev *runbookv1.Event) (phase, text string) {
	phase, text = vocab.Describe(ev)
	return phase, indentLines(text, watchTextColumn)
}

// indentLines indents the lines of text after the first to column.
func indentLines(text string, column int) string {
	return strings.ReplaceAll(text, "\n", "\n"+strings.Repeat(" ", column))
}
