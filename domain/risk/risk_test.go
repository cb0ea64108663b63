package risk

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
)

func TestLevelOfBoundaries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		score int
		level string
		exec  bool
	}{
		{0, LOW, false}, {1, LOW, false}, {4, LOW, false},
		{5, MEDIUM, false}, {9, MEDIUM, false},
		{10, HIGH, true}, {16, HIGH, true},
		{17, CRITICAL, true}, {25, CRITICAL, true},
	} {
		if got := LevelOf(tc.score); got != tc.level {
			t.Errorf("LevelOf(%d) = %s, want %s", tc.score, got, tc.level)
		}
		if got := NeedsExecutiveApproval(LevelOf(tc.score)); got != tc.exec {
			t.Errorf("NeedsExecutiveApproval(LevelOf(%d)) = %v, want %v", tc.score, got, tc.exec)
		}
	}
}

func TestScore(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		prob, imp   string
		p, i, score int
		level       string
		exec        bool
		note        string
	}{
		// The seed's two examples (risk-assessment.js).
		{"seed R001", "low", "major", 2, 4, 8, MEDIUM, false, `probability "low" = 2; impact "major" = 4`},
		{"seed R002", "very_low", "severe", 1, 5, 5, MEDIUM, false, `probability "very_low" = 1; impact "severe" = 5`},
		// The template's words.
		{"template low/high", "low", "high", 2, 4, 8, MEDIUM, false, `impact "high" (template word) scored as major = 4`},
		{"template medium/medium", "medium", "medium", 3, 3, 9, MEDIUM, false, `impact "medium" (template word) scored as moderate = 3`},
		{"template low impact", "high", "low", 4, 2, 8, MEDIUM, false, `impact "low" (template word) scored as minor = 2`},
		{"template critical", "high", "critical", 4, 5, 20, CRITICAL, true, `impact "critical" (template word) scored as severe = 5`},
		// Every boundary a product reaches.
		{"4 LOW", "very_low", "major", 1, 4, 4, LOW, false, ""},
		{"4 LOW 2x2", "low", "minor", 2, 2, 4, LOW, false, ""},
		{"5 MEDIUM", "very_low", "severe", 1, 5, 5, MEDIUM, false, ""},
		{"9 MEDIUM", "medium", "moderate", 3, 3, 9, MEDIUM, false, ""},
		{"10 HIGH", "low", "severe", 2, 5, 10, HIGH, true, ""},
		{"16 HIGH", "high", "major", 4, 4, 16, HIGH, true, ""},
		{"20 CRITICAL", "very_high", "major", 5, 4, 20, CRITICAL, true, ""},
		{"25 CRITICAL", "very_high", "severe", 5, 5, 25, CRITICAL, true, ""},
		{"1 LOW", "very_low", "negligible", 1, 1, 1, LOW, false, ""},
		// Case and spacing are forgiven.
		{"case", "Very Low", "MAJOR", 1, 4, 4, LOW, false, `probability "Very Low" = 1`},
		// Unknown words are never scored as harmless.
		{"unknown", "sometimes", "huge", 5, 5, 25, CRITICAL, true, `impact "huge" is not a known word, scored as the worst = 5`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := Score(plan.Risk{Risk: "x", Probability: tc.prob, Impact: tc.imp, Mitigation: "m", Owner: "o"}, 0)
			if r.ProbabilityScore != tc.p || r.ImpactScore != tc.i || r.Score != tc.score || r.Level != tc.level || r.RequiresExecutiveApproval != tc.exec {
				t.Errorf("got p=%d i=%d score=%d %s exec=%v, want p=%d i=%d score=%d %s exec=%v",
					r.ProbabilityScore, r.ImpactScore, r.Score, r.Level, r.RequiresExecutiveApproval, tc.p, tc.i, tc.score, tc.level, tc.exec)
			}
			if !strings.Contains(r.ScoringNote, tc.note) {
				t.Errorf("note %q does not contain %q", r.ScoringNote, tc.note)
			}
			if r.Probability != tc.prob || r.Impact != tc.imp || r.Description != "x" || r.Mitigation != "m" || r.Owner != "o" || r.ID != "R001" {
				t.Errorf("fields not carried over: %+v", r)
			}
		})
	}
}

func TestAssess(t *testing.T) {
	t.Parallel()
	roles := map[string]plan.Approval{
		"technical_approval": {Approver: "Lead Architect"},
		"business_approval":  {Approver: "CEO"},
		"security_approval":  {Approver: "Security Officer"},
	}
	for _, tc := range []struct {
		name      string
		risks     []plan.Risk
		approval  map[string]plan.Approval
		level     string
		max       int
		exec      bool
		approvals []string
		ids       []string
	}{
		{
			name:  "no risks is LOW",
			level: LOW, approvals: nil,
		},
		{
			name:     "seed template: low×high and medium×medium",
			risks:    []plan.Risk{{Risk: "AI 모델 호환성 문제", Probability: "low", Impact: "high"}, {Risk: "성능 저하", Probability: "medium", Impact: "medium"}},
			approval: roles,
			level:    MEDIUM, max: 9,
			approvals: []string{"business_approval", "security_approval", "technical_approval"},
			ids:       []string{"R001", "R002"},
		},
		{
			name:     "seed matrix examples",
			risks:    []plan.Risk{{ID: "R001", Probability: "low", Impact: "major"}, {ID: "R002", Probability: "very_low", Impact: "severe"}},
			approval: roles,
			level:    MEDIUM, max: 8,
			approvals: []string{"business_approval", "security_approval", "technical_approval"},
			ids:       []string{"R001", "R002"},
		},
		{
			name:     "HIGH adds executive approval",
			risks:    []plan.Risk{{Probability: "low", Impact: "minor"}, {ID: "DB", Probability: "high", Impact: "major"}},
			approval: roles,
			level:    HIGH, max: 16, exec: true,
			approvals: []string{"business_approval", "security_approval", "technical_approval", ExecutiveApproval},
			ids:       []string{"R001", "DB"},
		},
		{
			name:     "CRITICAL with executive approval already listed",
			risks:    []plan.Risk{{Probability: "very_high", Impact: "critical"}},
			approval: map[string]plan.Approval{"executive_approval": {}, "business_approval": {}},
			level:    CRITICAL, max: 25, exec: true,
			approvals: []string{"business_approval", "executive_approval"},
			ids:       []string{"R001"},
		},
		{
			name:  "CRITICAL without approval section",
			risks: []plan.Risk{{Probability: "very_high", Impact: "severe"}},
			level: CRITICAL, max: 25, exec: true,
			approvals: []string{ExecutiveApproval},
			ids:       []string{"R001"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := Assess(tc.risks, tc.approval)
			if a.Level != tc.level || a.MaxScore != tc.max || a.RequiresExecutiveApproval != tc.exec {
				t.Errorf("got %s max=%d exec=%v, want %s max=%d exec=%v", a.Level, a.MaxScore, a.RequiresExecutiveApproval, tc.level, tc.max, tc.exec)
			}
			if !reflect.DeepEqual(a.ApprovalsRequired, tc.approvals) {
				t.Errorf("approvals %q, want %q", a.ApprovalsRequired, tc.approvals)
			}
			var ids []string
			for _, r := range a.Risks {
				ids = append(ids, r.ID)
			}
			if !reflect.DeepEqual(ids, tc.ids) {
				t.Errorf("ids %q, want %q", ids, tc.ids)
			}
		})
	}
}

// Every word the plan accepts has a score that is not the unknown-word
// fallback: the plan's enums and the matrix agree.
func TestEveryPlanWordIsScored(t *testing.T) {
	t.Parallel()
	for _, w := range plan.ProbabilityWords() {
		if s := ScoreProbability(w); s.Unknown || s.Score < 1 || s.Score > 5 {
			t.Errorf("probability %q scored %+v", w, s)
		}
	}
	for _, w := range plan.ImpactWords() {
		if s := ScoreImpact(w); s.Unknown || s.Score < 1 || s.Score > 5 {
			t.Errorf("impact %q scored %+v", w, s)
		}
	}
}
