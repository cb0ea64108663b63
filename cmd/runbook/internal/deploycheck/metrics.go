package deploycheck

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
)

// runbookMetric matches a runbook metric name in PromQL or text.
var runbookMetric = regexp.MustCompile(`\brunbook_[a-z0-9_]*[a-z0-9]`)

// RuleTexts returns, rule by rule, the PromQL expression and the
// annotations of a Prometheus rules file (deploy/prometheus/rules.yml):
// where it names metrics. An alert or record without an expression is an
// error naming it.
func RuleTexts(data []byte) ([]string, error) {
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Record      string            `yaml:"record"`
				Expr        string            `yaml:"expr"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	var out []string
	for _, g := range f.Groups {
		for i, r := range g.Rules {
			if strings.TrimSpace(r.Expr) == "" {
				return nil, fmt.Errorf("rules: group %s, rule %d (%s%s): no expr", g.Name, i, r.Alert, r.Record)
			}
			out = append(out, r.Expr)
			for _, k := range sortedKeys(r.Annotations) {
				out = append(out, r.Annotations[k])
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("rules: no rules")
	}
	return out, nil
}

// DashboardQueries returns every query ("expr") of a Grafana dashboard's
// panels, rows' panels included, by panel title; an invalid JSON, or a
// panel target without a query, is an error naming the panel.
func DashboardQueries(data []byte) (map[string][]string, error) {
	type panel struct {
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		UID    string            `json:"uid"`
		Title  string            `json:"title"`
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	if d.UID == "" || d.Title == "" {
		return nil, fmt.Errorf("dashboard: no uid or title")
	}
	out := map[string][]string{}
	var walk func([]json.RawMessage) error
	walk = func(raw []json.RawMessage) error {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				return fmt.Errorf("dashboard: panel: %w", err)
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				return fmt.Errorf("dashboard: panel %q has no query", p.Title)
			}
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					return fmt.Errorf("dashboard: panel %q, query %s: no expr", p.Title, t.RefID)
				}
				out[p.Title] = append(out[p.Title], t.Expr)
			}
			if err := walk(p.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	return out, nil
}

// RunbookMetrics are the runbook_* metric names in texts, sorted, each
// once.
func RunbookMetrics(texts ...string) []string {
	var out []string
	for _, t := range texts {
		out = append(out, runbookMetric.FindAllString(t, -1)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
