package planview

import (
	"fmt"
	"strings"

	"github.com/kis-core/runbook/domain/expect"
	"github.com/kis-core/runbook/domain/plan"
)

// expectText is what a health check, wait.until or http step waits for or
// requires of its response: the status, then each assertion with its value
// — `200, $.release = "new", header Content-Type ~ /^application/json/,
// body contains "ok", ≤ 500 ms`.
func expectText(e plan.Expect) string {
	parts := []string{statusText(e.Status)}
	for _, p := range sortedKeys(e.JSON) {
		if w := e.JSON[p]; w == expect.Exists {
			parts = append(parts, p+" exists")
		} else {
			parts = append(parts, fmt.Sprintf("%s = %s", p, expect.ShowValue(w)))
		}
	}
	for _, p := range sortedKeys(e.JSONMatch) {
		parts = append(parts, fmt.Sprintf("%s ~ /%s/", p, e.JSONMatch[p]))
	}
	for _, p := range e.JSONAbsent {
		parts = append(parts, "no "+p)
	}
	for _, h := range sortedKeys(e.Headers) {
		if w := e.Headers[h]; w == expect.Exists {
			parts = append(parts, "header "+h+" present")
		} else {
			parts = append(parts, fmt.Sprintf("header %s = %s", h, expect.ShowValue(w)))
		}
	}
	for _, h := range sortedKeys(e.HeadersMatch) {
		parts = append(parts, fmt.Sprintf("header %s ~ /%s/", h, e.HeadersMatch[h]))
	}
	for _, s := range e.BodyContains {
		parts = append(parts, "body contains "+expect.ShowValue(s))
	}
	if e.MaxMS > 0 {
		parts = append(parts, fmt.Sprintf("≤ %d ms", e.MaxMS))
	}
	return strings.Join(parts, ", ")
}
