package report

import (
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/kis-core/runbook/domain/memo"
	"github.com/kis-core/runbook/domain/plan"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// planInfo is what the report reads from the plan text of change.requested.
type planInfo struct {
	id, title, typ, priority, requester string
	// limits are the plan's effective limits by metric
	// (plan.Monitor.Limits): what the monitor enforced.
	limits map[string]plan.Limit
	// systems are scope.systems_affected: the QC summary's header names them.
	systems []string
	// checkKinds are the kinds of the plan's pre-flight checks (postgres,
	// redis, ...): a Database or Cache line the plan never checks reads
	// "not checked".
	checkKinds map[string]bool
	// described are the texts of the plan's described (manual) rollback
	// steps, in order.
	described []string
	// reverts is the plan's reverts section (a revert run's), nil when none.
	reverts *RunLink
}

// readPlan picks a few fields out of the plan text of change.requested
// leniently: the report of an INVALID run still names its change, and a
// replay years later does not depend on how strict the plan schema has
// become since. Anything missing or of the wrong shape is left empty. The
// limits are those of the plan as the monitor read it (the one strict
// reading, plan.FromChangeRequest); of a plan that no longer parses, those
// of its monitor.thresholds over the seed's.
//
// Reading is pure and every report of a run reads its plan: the reading
// is memoised by the text (plan.TextKey); callers treat it as read-only.
func readPlan(cr *runbookv1.ChangeRequested) planInfo {
	key := plan.TextKey(cr)
	if info, ok := planInfos.Get(key); ok {
		return info
	}
	info := readPlanText(cr)
	planInfos.Put(key, info)
	return info
}

// planInfos memoises readPlan: the plans of the runs being reported.
var planInfos = memo.New[[32]byte, planInfo](256)

func readPlanText(cr *runbookv1.ChangeRequested) planInfo {
	text := cr.GetPlanYaml()
	info := planInfo{limits: limitsOf(plan.Monitor{})}
	if text == "" {
		return info
	}
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return info
	}
	req := mapOf(doc["change_request"])
	info.id = str(req["id"])
	info.title = str(req["title"])
	info.typ = str(req["type"])
	info.priority = str(req["priority"])
	info.requester = str(mapOf(doc["requester"])["name"])
	if rv := mapOf(doc["reverts"]); str(rv["run"]) != "" {
		info.reverts = &RunLink{Run: str(rv["run"]), ChangeID: str(rv["change_id"]), Reason: str(rv["reason"])}
	}
	for _, sys := range listOf(mapOf(doc["scope"])["systems_affected"]) {
		if t := strings.TrimSpace(str(sys)); t != "" {
			info.systems = append(info.systems, t)
		}
	}
	info.checkKinds = map[string]bool{}
	for _, c := range listOf(mapOf(doc["preflight"])["checks"]) {
		for k := range mapOf(c) {
			info.checkKinds[k] = true
		}
	}
	// rollback_steps: a list whose texts are described steps, or the seed's
	// one numbered text, split as the plan's parser splits it.
	switch rs := mapOf(doc["rollback_plan"])["rollback_steps"].(type) {
	case string:
		info.described = plan.SplitNumbered(rs)
	default:
		for _, s := range listOf(rs) {
			if t, ok := s.(string); ok && strings.TrimSpace(t) != "" {
				info.described = append(info.described, strings.TrimSpace(t))
			}
		}
	}
	if p, _ := plan.FromChangeRequest(cr); p != nil {
		info.limits = limitsOf(p.Monitor)
		return info
	}
	var m plan.Monitor
	for k, v := range mapOf(mapOf(doc["monitor"])["thresholds"]) {
		if f, ok := number(v); ok {
			if m.Thresholds == nil {
				m.Thresholds = map[string]float64{}
			}
			m.Thresholds[k] = f
		}
	}
	info.limits = limitsOf(m)
	return info
}

func limitsOf(m plan.Monitor) map[string]plan.Limit {
	out := map[string]plan.Limit{}
	for _, l := range m.Limits() {
		out[l.Metric] = l
	}
	return out
}

func listOf(v any) []any {
	l, _ := v.([]any)
	return l
}

func mapOf(v any) map[string]any {
	switch m := v.(type) {
	case map[string]any:
		return m
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, v := range m {
			if ks, ok := k.(string); ok {
				out[ks] = v
			}
		}
		return out
	}
	return nil
}

func str(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case int, int64, uint64, float64, bool:
		return yamlScalar(s)
	}
	return ""
}

func yamlScalar(v any) string {
	switch x := v.(type) {
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return ""
}

func number(v any) (float64, bool) {
	switch x := v.(type) {
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float64:
		return x, finite(x)
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil && finite(f)
	}
	return 0, false
}
