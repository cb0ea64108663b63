package allinone_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/eventbus/natstest"
)

const quickPlan = `change_request: {id: CR-RD, title: "reports dir", type: maintenance, priority: low}
requester: {name: ops, role: SRE, contact: ops@example.com}
deploy:
  steps:
    - {name: noop, command: {argv: ["true"]}}
`

// Every published report is also a file <reports-dir>/<run>-report.json,
// the report.ready payload byte for byte.
func TestReportsDirFile(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "reports")
	p := startPipeline(t, func(o *allinone.Options) { o.ReportsDir = dir })
	run := p.submit(t, []byte(quickPlan))
	rr := p.report(t, run, 30*time.Second)
	name := filepath.Join(dir, run+"-report.json")
	var data []byte
	// The file is written right after the publication.
	natstest.Eventually(t, 10*time.Second, "report file "+name, func() bool {
		var err error
		data, err = os.ReadFile(name)
		return err == nil
	})
	if string(data) != rr.ReportJson {
		t.Errorf("report file differs from report.ready's report_json:\nfile: %s\nevent: %s", data, rr.ReportJson)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("reports dir holds %d entries, want only the report (no temp files)", len(entries))
	}
}
