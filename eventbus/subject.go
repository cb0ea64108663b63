// Package eventbus is runbook's plumbing on NATS JetStream: the streams, the
// subjects, the wire codec, publishing (deduplicated and at-most-once), the
// typed consume loop with dead-lettering, and readers of a run's history.
// Every service uses it; none of them talks to JetStream on its own.
package eventbus

import (
	"fmt"
	"regexp"
	"strings"
)

const (
	// SubjectPrefix is the root of every audit subject: runbook.<run_id>.<type>.
	SubjectPrefix = "runbook"
	// MetricsPrefix is the root of metric sample subjects:
	// runbook_metrics.<run_id>.<metric>. It is outside runbook.> because two
	// streams cannot share subjects.
	MetricsPrefix = "runbook_metrics"
)

var runIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidateRunID reports whether id can be used as a run id: it becomes one
// token of a NATS subject, so only [A-Za-z0-9_-] are allowed.
func ValidateRunID(id string) error {
	if !runIDPattern.MatchString(id) {
		return fmt.Errorf("run id %q is not subject-safe: use 1-128 characters of [A-Za-z0-9_-]", id)
	}
	return nil
}

// Subject is the subject of an event of type typ in run runID.
func Subject(runID, typ string) string {
	return SubjectPrefix + "." + runID + "." + typ
}

// RunSubjects matches every event of one run.
func RunSubjects(runID string) string {
	return SubjectPrefix + "." + runID + ".>"
}

// TypeSubjects matches one event type across all runs.
func TypeSubjects(typ string) string {
	return SubjectPrefix + ".*." + typ
}

// MetricSubject is the subject of a metric sample on RUNBOOK_METRICS.
func MetricSubject(runID, metric string) string {
	return MetricsPrefix + "." + runID + "." + metric
}

// ParseSubject splits runbook.<run_id>.<type> into its run id and type.
func ParseSubject(subject string) (runID, typ string, err error) {
	parts := strings.SplitN(subject, ".", 3)
	if len(parts) != 3 || parts[0] != SubjectPrefix || parts[1] == "" || parts[2] == "" {
		return "", "", fmt.Errorf("subject %q is not runbook.<run_id>.<type>", subject)
	}
	return parts[1], parts[2], nil
}
