package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter/report"
)

// TestReportFormatsAndRetro: report --format markdown renders the published
// report, bad formats are usage errors, and retro prints YAML that parses.
func TestReportFormatsAndRetro(t *testing.T) {
	t.Parallel()
	s := natstest.Server(t)
	bus := natstest.Bus(t, s, "test")
	url := s.ClientURL()
	ctx := context.Background()

	const rid = "R-RETRO"
	mustPublish := func(ev *runbookv1.Event) {
		t.Helper()
		if _, err := bus.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	mustPublish(eventbus.New(rid, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		ChangeId: "CR-7", Title: "seven", Requester: "Ann",
		PlanYaml: "change_request: {id: CR-7, title: seven, type: maintenance, priority: low}\nrequester: {name: Ann}\n",
	}}))
	code, _, errOut := run(t, "retro", rid, "--nats-url", url)
	if code != 4 || !strings.Contains(errOut, "not over yet") {
		t.Fatalf("retro of a run in progress: exit %d %q", code, errOut)
	}
	mustPublish(eventbus.New(rid, &runbookv1.Event_ChangeRejected{ChangeRejected: &runbookv1.ChangeRejected{
		Errors: []*runbookv1.PlanError{{Path: "deploy", Message: "required"}}}}))
	hist, err := bus.RunHistory(ctx, rid)
	if err != nil {
		t.Fatal(err)
	}
	var evs []*runbookv1.Event
	for _, e := range hist {
		evs = append(evs, e.Event)
	}
	res, err := report.Generate(rid, evs)
	if err != nil || !res.Final {
		t.Fatalf("Generate: %v final=%v", err, res != nil && res.Final)
	}
	mustPublish(eventbus.CausedBy(eventbus.New(rid, &runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{
		Status: string(res.Status), ReportJson: string(res.JSON), QcSummary: res.QCSummary}}), res.FinalEvent))

	code, out, _ := run(t, "report", rid, "--format", "markdown", "--nats-url", url)
	if code != 0 || out != report.Markdown(&res.Report, res.QCSummary) || !strings.HasPrefix(out, "# Deployment report R-RETRO: INVALID") {
		t.Fatalf("report --format markdown: exit %d\n%s", code, out)
	}
	code, out, _ = run(t, "report", rid, "--format", "json", "--nats-url", url)
	if code != 0 || strings.TrimSuffix(out, "\n") != string(res.JSON) {
		t.Fatalf("report --format json: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{"--format", "html"}, {"--json", "--format", "markdown"}} {
		code, _, errOut = run(t, append([]string{"report", rid, "--nats-url", url}, args...)...)
		if code != 2 {
			t.Errorf("report %v: exit %d %q, want 2", args, code, errOut)
		}
	}

	code, out, errOut = run(t, "retro", rid, "--nats-url", url)
	if code != 0 {
		t.Fatalf("retro: exit %d %q", code, errOut)
	}
	var doc struct {
		Retrospective struct {
			DeploymentID string   `yaml:"deployment_id"`
			Participants []string `yaml:"participants"`
		} `yaml:"retrospective"`
		WentWrong []string `yaml:"what_went_wrong"`
	}
	if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("retro output is not YAML: %v\n%s", err, out)
	}
	if doc.Retrospective.DeploymentID != rid || len(doc.WentWrong) == 0 || !strings.Contains(doc.WentWrong[0], "INVALID") {
		t.Errorf("retro: %+v\n%s", doc, out)
	}
}
