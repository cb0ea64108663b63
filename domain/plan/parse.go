package plan

import (
	"fmt"

	"github.com/goccy/go-yaml"
)

// Issue is one validation finding: where, what was written, what is wrong
// and what would be right.
type Issue struct {
	Path    string // e.g. deploy.steps[2].timeout
	Line    int    // 1-based, 0 when unknown
	Column  int
	Value   string
	Message string
	Warning bool
}

func (i Issue) String() string {
	return fmt.Sprintf("%d:%d %s: %s", i.Line, i.Column, i.Path, i.Message)
}

// Parse reads and validates a plan. The plan is nil when any issue is an
// error. TEMPORARY minimal version: being replaced by the full validator.
func Parse(source string, data []byte) (*Plan, []Issue) {
	var p Plan
	if err := yaml.Unmarshal(data, &p); err != nil {
		return nil, []Issue{{Path: source, Message: err.Error()}}
	}
	return &p, nil
}
