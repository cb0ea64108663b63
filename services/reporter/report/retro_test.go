package report

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// withTimeline gives the run's plan a timeline.estimated_duration.
func withTimeline(h *history, est string) *history {
	cr := h.events[0].GetChangeRequested()
	cr.PlanYaml += "timeline: {estimated_duration: \"" + est + "\"}\n"
	return h
}

type retroDoc struct {
	Retrospective struct {
		DeploymentID string   `yaml:"deployment_id"`
		Date         string   `yaml:"date"`
		Participants []string `yaml:"participants"`
	} `yaml:"retrospective"`
	WentWell    []string `yaml:"what_went_well"`
	WentWrong   []string `yaml:"what_went_wrong"`
	ActionItems []struct {
		ID, Description, Assignee, Priority string
		DueDate                             string `yaml:"due_date"`
	} `yaml:"action_items"`
	LessonsLearned      []string `yaml:"lessons_learned"`
	ProcessImprovements []string `yaml:"process_improvements"`
	NextDeploymentFocus []string `yaml:"next_deployment_focus"`
	MetricsAnalysis     struct {
		DeploymentDuration map[string]string `yaml:"deployment_duration"`
		Downtime           map[string]string `yaml:"downtime"`
		TestPassRate       map[string]string `yaml:"test_pass_rate"`
	} `yaml:"metrics_analysis"`
}

// TestRetroGolden prints the retrospective of TestReportGolden's runs and
// compares it with testdata/*.retro.yaml (go test -run TestRetroGolden
// -update rewrites them); every output parses back as YAML.
func TestRetroGolden(t *testing.T) {
	t.Parallel()
	for name, h := range map[string]*history{
		"success":          withTimeline(successRun(), "20 minutes"),
		"rolled_back":      withTimeline(rolledBackRun(), "2 hours"),
		"preflight_failed": preflightFailedRun(),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r, err := Retro(runID, h.events)
			if err != nil {
				t.Fatal(err)
			}
			out := r.YAML()
			golden := filepath.Join("testdata", name+".retro.yaml")
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("golden file (run with -update to create): %v", err)
			}
			if out != string(want) {
				t.Errorf("retrospective differs from %s:\n%s", golden, out)
			}
			var doc retroDoc
			if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
				t.Fatalf("output is not YAML: %v\n%s", err, out)
			}
			if doc.Retrospective.DeploymentID != runID || doc.Retrospective.Date != "2025-09-22" {
				t.Errorf("header: %+v", doc.Retrospective)
			}
			if doc.LessonsLearned == nil || len(doc.LessonsLearned) != 0 || doc.ProcessImprovements == nil {
				t.Errorf("lessons_learned / process_improvements should be empty lists")
			}
		})
	}
}

func TestRetroContent(t *testing.T) {
	t.Parallel()
	r, err := Retro(runID, withTimeline(successRun(), "20 minutes").events)
	if err != nil {
		t.Fatal(err)
	}
	var doc retroDoc
	if err := yaml.Unmarshal([]byte(r.YAML()), &doc); err != nil {
		t.Fatal(err)
	}
	// deploy.started at +10s, the run ends with monitor.completed at +30m11.25s:
	// 30m1.25s actual of 20m planned is +50%.
	dd := doc.MetricsAnalysis.DeploymentDuration
	if dd["planned"] != "20 minutes" || dd["actual"] != "30m 1.250s" || dd["variance"] != "+50%" {
		t.Errorf("deployment_duration %v", dd)
	}
	if got := doc.MetricsAnalysis.Downtime["actual"]; got != "51.000s" { // deploy +10s → +61s
		t.Errorf("downtime actual %q", got)
	}
	tc := doc.MetricsAnalysis.TestPassRate
	if tc["smoke_tests"] != "100%" || tc["regression_tests"] != "100%" || tc["performance_tests"] != "100%" {
		t.Errorf("test_pass_rate %v", tc)
	}
	if !strings.Contains(strings.Join(doc.WentWell, "\n"), "all 2 smoke tests passed") {
		t.Errorf("what_went_well %v", doc.WentWell)
	}
	want := []string{"Kim Operator (requester)", "kim (operator)"}
	if strings.Join(doc.Retrospective.Participants, ",") != strings.Join(want, ",") {
		t.Errorf("participants %v, want %v", doc.Retrospective.Participants, want)
	}

	rb, err := Retro(runID, rolledBackRun().events)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(rb.YAML()), &doc); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(doc.WentWrong, "\n")
	for _, w := range []string{"run ended ROLLED_BACK", "CRITICAL THRESHOLD", "rollback: api_response_time_p95 3500 > 150% of 2100 (requested by monitor)"} {
		if !strings.Contains(joined, w) {
			t.Errorf("what_went_wrong lacks %q: %v", w, doc.WentWrong)
		}
	}
	if !strings.Contains(strings.Join(doc.WentWell, "\n"), "rollback completed in 1m 30.000s") {
		t.Errorf("what_went_well %v", doc.WentWell)
	}
	// The release was rolled back: its deploy did not go well, though it
	// completed (it is the reason for the retrospective).
	for _, w := range doc.WentWell {
		if strings.Contains(w, "deploy completed") || strings.Contains(w, "SUCCESS") {
			t.Errorf("a rolled-back run lists %q under what_went_well", w)
		}
	}
	if len(doc.ActionItems) == 0 || doc.ActionItems[0].ID != "AI-001" || doc.ActionItems[0].Priority != "MEDIUM" {
		t.Errorf("action_items %+v", doc.ActionItems)
	}
}

// Text from plans and events cannot break the YAML.
func TestRetroQuotesHostileText(t *testing.T) {
	t.Parallel()
	h := &history{}
	h.at(0, "change.requested", &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{
		PlanYaml: "change_request: {id: X}\nrequester: {name: \"a: b\\n- c # d\"}\n"}}, "op\"er\x00")
	h.at(time.Second, "change.rejected", &runbookv1.Event_ChangeRejected{ChangeRejected: &runbookv1.ChangeRejected{
		Errors: []*runbookv1.PlanError{{Path: "x", Message: "'quoted' \"and\" ]: {"}}}})
	r, err := Retro(runID, h.events)
	if err != nil {
		t.Fatal(err)
	}
	var doc retroDoc
	if err := yaml.Unmarshal([]byte(r.YAML()), &doc); err != nil {
		t.Fatalf("%v\n%s", err, r.YAML())
	}
	if got := doc.Retrospective.Participants; len(got) != 2 || got[0] != "a: b\n- c # d (requester)" || got[1] != "op\"er\x00 (operator)" {
		t.Errorf("participants %q", got)
	}
}

func TestVariance(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		planned, actual time.Duration
		want            string
	}{
		{2 * time.Hour, 150 * time.Minute, "+25%"},
		{15 * time.Minute, 8 * time.Minute, "-47%"},
		{time.Hour, time.Hour, "+0%"},
		{0, time.Hour, "n/a"},
	} {
		if got := Variance(c.planned, c.actual); got != c.want {
			t.Errorf("Variance(%v, %v) = %q, want %q", c.planned, c.actual, got, c.want)
		}
	}
}

// YAML (the template with comments) and Doc (what retro -o json prints)
// are one document: the YAML parses to Doc's values, key for key.
func TestRetroYAMLIsDoc(t *testing.T) {
	t.Parallel()
	for name, h := range map[string]*history{
		"success":          withTimeline(successRun(), "20 minutes"),
		"rolled_back":      rolledBackRun(),
		"preflight_failed": preflightFailedRun(),
	} {
		r, err := Retro(runID, h.events)
		if err != nil {
			t.Fatal(err)
		}
		fromYAML, err := yaml.YAMLToJSON([]byte(r.YAML()))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fromDoc, err := json.Marshal(r.Doc())
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal(fromYAML, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(fromDoc, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: the YAML and Doc differ:\nyaml %s\ndoc  %s", name, fromYAML, fromDoc)
		}
	}
}
