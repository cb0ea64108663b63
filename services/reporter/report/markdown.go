package report

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/kis-core/runbook/domain/plan"
)

// Markdown renders a report as a readable Markdown document: a title with
// the status and the run id, the QC summary in a code block, then tables of
// the approvals, tests, issues, rollback and recommendations. It is pure:
// the same report and summary give the same text (ending in one newline).
func Markdown(r *Report, qcSummary string) string {
	var b strings.Builder
	d := r.Deployment
	fmt.Fprintf(&b, "# Deployment report %s: %s\n\n", d.ID, d.Status)
	end := "-"
	if d.EndTime != nil {
		end = *d.EndTime
	}
	table(&b, []string{"Field", "Value"}, [][]string{
		{"Run", d.ID},
		{"Status", d.Status},
		{"Change", strings.TrimSpace(r.Change.ID + " " + r.Change.Title)},
		{"Type / priority", r.Change.Type + " / " + r.Change.Priority},
		{"Requester", r.Change.Requester},
		{"Operator", d.Operator},
		{"Start", d.StartTime},
		{"End", end},
		{"Duration", d.Duration},
		{"Overall status", r.Summary.OverallStatus},
		{"Performance", joinNonEmpty(" - ", r.Summary.PerformanceStatus, r.Summary.PerformanceReason)},
		{"Critical issues", strconv.Itoa(r.Summary.CriticalIssues)},
	})
	for _, l := range LinkLines(r) {
		k, v, _ := strings.Cut(l, ": ")
		fmt.Fprintf(&b, "\n**%s** %s\n", k, v)
	}

	b.WriteString("\n## QC summary\n\n```\n")
	b.WriteString(strings.TrimRight(qcSummary, "\n"))
	b.WriteString("\n```\n")

	b.WriteString("\n## Approvals\n\n")
	if len(r.Approvals) == 0 {
		b.WriteString("None.\n")
	} else {
		rows := make([][]string, 0, len(r.Approvals))
		for _, a := range r.Approvals {
			note := a.Comment
			if a.Reason != "" {
				note = joinNonEmpty("; ", a.Comment, a.Reason)
			}
			rows = append(rows, []string{a.Time, a.Decision, a.Role, a.Approver, note})
		}
		table(&b, []string{"Time", "Decision", "Role", "Approver", "Comment"}, rows)
	}

	tr := r.Summary.TestResults
	fmt.Fprintf(&b, "\n## Tests\n\n%d passed, %d failed, %d total.\n", tr.Passed, tr.Failed, tr.Total)
	tests := slices.Concat(r.Tests.SmokeTests, r.Tests.RegressionTests, r.Tests.PerformanceTests)
	if len(tests) > 0 {
		b.WriteString("\n")
		rows := make([][]string, 0, len(tests))
		for _, tc := range tests {
			rows = append(rows, []string{tc.Name, tc.Type, tc.Status, strconv.FormatInt(tc.DurationMS, 10), joinNonEmpty("; ", tc.Details, tc.Error)})
		}
		table(&b, []string{"Test", "Type", "Status", "Duration (ms)", "Details"}, rows)
	}

	if m := r.Monitoring; m != nil {
		fmt.Fprintf(&b, "\n## Monitoring\n\nWatch window: %s.\n", m.Observed)
		if m.Reason != "" {
			fmt.Fprintf(&b, "\nThe window closed: %s.\n", m.Reason)
		}
	}

	b.WriteString("\n## Issues\n\n")
	if len(r.Issues) == 0 {
		b.WriteString("None.\n")
	} else {
		rows := make([][]string, 0, len(r.Issues))
		for _, is := range r.Issues {
			rows = append(rows, []string{is.Time, is.Severity, is.Type, is.Metric, mdMetric(is.Metric, is.Value), mdMetric(is.Metric, is.Threshold), is.Message})
		}
		table(&b, []string{"Time", "Severity", "Type", "Metric", "Value", "Threshold", "Message"}, rows)
	}

	b.WriteString("\n## Rollback\n\n")
	rb := r.Rollback
	table(&b, []string{"Field", "Value"}, [][]string{
		{"Executed", strconv.FormatBool(rb.Executed)},
		{"Reason", deref(rb.Reason)},
		{"Requested by", deref(rb.RequestedBy)},
		{"Duration", deref(rb.Duration)},
	})
	if v := rb.Verification; v != nil {
		fmt.Fprintf(&b, "\n### Verification\n\nRe-ran %s after the rollback: %s, %d passed, %d failed.\n", strings.Join(v.Suites, ", "), v.Status, v.Passed, v.Failed)
		if len(v.Tests) > 0 {
			b.WriteString("\n")
			rows := make([][]string, 0, len(v.Tests))
			for _, tc := range v.Tests {
				rows = append(rows, []string{tc.Name, tc.Type, tc.Status, strconv.FormatInt(tc.DurationMS, 10), joinNonEmpty("; ", tc.Details, tc.Error)})
			}
			table(&b, []string{"Test", "Type", "Status", "Duration (ms)", "Details"}, rows)
		}
	}
	if rb.NothingUndone {
		b.WriteString("\n**" + plan.NothingUndone + "**: the plan has no executable rollback step; see the operator's to-do.\n")
	}

	b.WriteString("\n## Operator to-do\n\n")
	if len(r.OperatorTodo) == 0 {
		b.WriteString("None.\n")
	} else {
		b.WriteString("Described steps of the plan: runbook showed them and ran none; they are the operator's to do by hand.\n\n")
		rows := make([][]string, 0, len(r.OperatorTodo))
		for i, td := range r.OperatorTodo {
			rows = append(rows, []string{strconv.Itoa(i + 1), td.Step, td.Phase, td.Note, td.Time})
		}
		table(&b, []string{"#", "Step", "Phase", "Status", "Time"}, rows)
	}

	b.WriteString("\n## Recommendations\n\n")
	if len(r.Recommendations) == 0 {
		b.WriteString("None.\n")
	} else {
		rows := make([][]string, 0, len(r.Recommendations))
		for _, rec := range r.Recommendations {
			rows = append(rows, []string{rec.Priority, rec.Type, rec.Description})
		}
		table(&b, []string{"Priority", "Type", "Description"}, rows)
	}
	return b.String()
}

// table writes a Markdown table; cells are escaped so that a pipe or a line
// break in a message cannot break the table.
func table(b *strings.Builder, header []string, rows [][]string) {
	line := func(cells []string) {
		b.WriteString("|")
		for _, c := range cells {
			b.WriteString(" ")
			b.WriteString(cell(c))
			b.WriteString(" |")
		}
		b.WriteString("\n")
	}
	line(header)
	b.WriteString("|")
	for range header {
		b.WriteString(" --- |")
	}
	b.WriteString("\n")
	for _, r := range rows {
		line(r)
	}
}

var cellEscaper = strings.NewReplacer("|", `\|`, "\r\n", "<br>", "\n", "<br>", "\r", "<br>")

func cell(s string) string {
	if s == "" {
		return "-"
	}
	return cellEscaper.Replace(s)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// mdMetric is a value of metric in its one unit (plan.FormatMetric).
func mdMetric(metric string, v *float64) string {
	if v == nil {
		return ""
	}
	return plan.FormatMetric(metric, *v)
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}
