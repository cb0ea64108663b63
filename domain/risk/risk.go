// Package risk is the seed's risk matrix (risk-assessment.js): probability
// very_low..very_high = 1..5, impact negligible..severe = 1..5, score =
// probability × impact, LOW ≤ 4 < MEDIUM ≤ 9 < HIGH ≤ 16 < CRITICAL, and
// HIGH or CRITICAL needs executive approval.
//
// The seed's change-plan template writes other words (probability
// low/medium/high, impact low/medium/high/critical); they are mapped onto
// the matrix and every result says how its words were scored. Pure: no
// NATS, no database.
package risk

import (
	"fmt"
	"sort"
	"strings"

	"github.com/kis-core/runbook/domain/plan"
)

// Levels, lowest first.
const (
	LOW      = "LOW"
	MEDIUM   = "MEDIUM"
	HIGH     = "HIGH"
	CRITICAL = "CRITICAL"
)

// ExecutiveApproval is the approval role HIGH and CRITICAL risks add.
const ExecutiveApproval = "executive_approval"

// The seed's matrix.
var (
	probability = map[string]int{"very_low": 1, "low": 2, "medium": 3, "high": 4, "very_high": 5}
	impact      = map[string]int{"negligible": 1, "minor": 2, "moderate": 3, "major": 4, "severe": 5}
	// impactTemplate maps the template's impact words onto the matrix.
	impactTemplate = map[string]string{"low": "minor", "medium": "moderate", "high": "major", "critical": "severe"}
)

// Word is how one probability or impact word was scored.
type Word struct {
	Written string // as written
	Matrix  string // the matrix word it was scored as
	Score   int    // 1..5
	// Template is true when the word is the template's, mapped onto the
	// matrix (impact "high" → major).
	Template bool
	// Unknown is true for a word neither the matrix nor the template has:
	// it is scored as the worst (5), never as harmless.
	Unknown bool
}

func (w Word) note(kind string) string {
	switch {
	case w.Unknown:
		return fmt.Sprintf("%s %q is not a known word, scored as the worst = %d", kind, w.Written, w.Score)
	case w.Template:
		return fmt.Sprintf("%s %q (template word) scored as %s = %d", kind, w.Written, w.Matrix, w.Score)
	}
	return fmt.Sprintf("%s %q = %d", kind, w.Written, w.Score)
}

func normalize(s string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), " ", "_")
}

// ScoreProbability scores a probability word (very_low..very_high; the
// template's low/medium/high are the matrix's own words).
func ScoreProbability(word string) Word {
	w := normalize(word)
	if s, ok := probability[w]; ok {
		return Word{Written: word, Matrix: w, Score: s}
	}
	return Word{Written: word, Matrix: "very_high", Score: 5, Unknown: true}
}

// ScoreImpact scores an impact word: the matrix's negligible..severe, or the
// template's low → minor, medium → moderate, high → major, critical → severe.
func ScoreImpact(word string) Word {
	w := normalize(word)
	if s, ok := impact[w]; ok {
		return Word{Written: word, Matrix: w, Score: s}
	}
	if m, ok := impactTemplate[w]; ok {
		return Word{Written: word, Matrix: m, Score: impact[m], Template: true}
	}
	return Word{Written: word, Matrix: "severe", Score: 5, Unknown: true}
}

// LevelOf is the seed's getRiskLevel.
func LevelOf(score int) string {
	switch {
	case score <= 4:
		return LOW
	case score <= 9:
		return MEDIUM
	case score <= 16:
		return HIGH
	}
	return CRITICAL
}

// NeedsExecutiveApproval is true for HIGH and CRITICAL.
func NeedsExecutiveApproval(level string) bool {
	return level == HIGH || level == CRITICAL
}

func rank(level string) int {
	switch level {
	case MEDIUM:
		return 1
	case HIGH:
		return 2
	case CRITICAL:
		return 3
	}
	return 0
}

// Result is one scored risk, the fields of runbookv1.Risk.
type Result struct {
	ID                        string // the plan's, or R001, R002, ... by position
	Description               string // the plan's risk text
	Probability               string // as written
	Impact                    string // as written
	ProbabilityScore          int
	ImpactScore               int
	Score                     int
	Level                     string
	RequiresExecutiveApproval bool
	Mitigation                string
	Owner                     string
	// ScoringNote says how the words were scored, e.g.
	// `probability "low" = 2; impact "high" (template word) scored as major = 4`.
	ScoringNote string
}

// Assessment is a plan's risk report.
type Assessment struct {
	Risks                     []Result
	Level                     string // the highest level; LOW without risks
	MaxScore                  int
	RequiresExecutiveApproval bool
	// ApprovalsRequired are the plan's approval roles, sorted, plus
	// executive_approval when a risk is HIGH or CRITICAL.
	ApprovalsRequired []string
}

// Score scores one risk.
func Score(r plan.Risk, index int) Result {
	p, i := ScoreProbability(r.Probability), ScoreImpact(r.Impact)
	id := r.ID
	if id == "" {
		id = fmt.Sprintf("R%03d", index+1)
	}
	score := p.Score * i.Score
	level := LevelOf(score)
	return Result{
		ID:                        id,
		Description:               r.Risk,
		Probability:               r.Probability,
		Impact:                    r.Impact,
		ProbabilityScore:          p.Score,
		ImpactScore:               i.Score,
		Score:                     score,
		Level:                     level,
		RequiresExecutiveApproval: NeedsExecutiveApproval(level),
		Mitigation:                r.Mitigation,
		Owner:                     r.Owner,
		ScoringNote:               p.note("probability") + "; " + i.note("impact"),
	}
}

// Assess scores every risk of a plan and lists the approvals it needs.
func Assess(risks []plan.Risk, approval map[string]plan.Approval) Assessment {
	a := Assessment{Level: LOW}
	for idx, r := range risks {
		res := Score(r, idx)
		a.Risks = append(a.Risks, res)
		if res.Score > a.MaxScore {
			a.MaxScore = res.Score
		}
		if rank(res.Level) > rank(a.Level) {
			a.Level = res.Level
		}
	}
	a.RequiresExecutiveApproval = NeedsExecutiveApproval(a.Level)
	for role := range approval {
		a.ApprovalsRequired = append(a.ApprovalsRequired, role)
	}
	sort.Strings(a.ApprovalsRequired)
	if a.RequiresExecutiveApproval {
		if _, listed := approval[ExecutiveApproval]; !listed {
			a.ApprovalsRequired = append(a.ApprovalsRequired, ExecutiveApproval)
		}
	}
	return a
}
