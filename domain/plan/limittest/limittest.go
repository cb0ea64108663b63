// Package limittest holds the plans the effective limits are tested over
// (plan.Monitor.Limits): domain/plan's table test says what each limit is,
// and the agreement test in cmd/runbook/internal/allinone shows that the
// monitor, the read API and the QC summary judge the same values the same
// way under those plans.
package limittest

// Head is a plan's required header; a Case's Monitor follows it.
const Head = `change_request: {id: CR-LIM, title: limits, type: maintenance, priority: low}
requester: {name: Rita, role: SRE}
deploy:
  steps:
    - {name: noop, command: {argv: ["true"]}}
`

// Case is one plan's monitor section and the gated metrics it is judged on.
type Case struct {
	Name    string
	Monitor string // the plan's monitor: section, indented under it
	Metrics []string
}

// YAML is the whole plan.
func (c Case) YAML() string { return Head + "monitor:\n" + c.Monitor }

// Cases are the plans: the seed's thresholds, gates with critical bounds, a
// non-default factor, a min gate, shadow mode and auto-rollback off.
var Cases = []Case{
	{Name: "seed thresholds", Monitor: `  thresholds: {api_response_time_p95: 2100, error_rate: 0.01, cpu_utilization: 80}
`, Metrics: []string{"api_response_time_p95", "error_rate", "cpu_utilization"}},
	{Name: "gates with critical", Monitor: `  gates:
    api_response_time_p95: {max: 2000, critical: 2500}
    error_rate: {max: 0.02, critical: 0.05}
`, Metrics: []string{"api_response_time_p95", "error_rate"}},
	{Name: "factor 2", Monitor: `  thresholds: {api_response_time_p95: 1000, error_rate: 0.02}
  auto_rollback: {factor: 2}
`, Metrics: []string{"api_response_time_p95", "error_rate"}},
	{Name: "min gate", Monitor: `  gates:
    throughput: {min: 10, rollback: true}
    api_response_time_p95: {min: 1, critical: 0.5}
`, Metrics: []string{"throughput", "api_response_time_p95"}},
	{Name: "shadow", Monitor: `  mode: shadow
  thresholds: {api_response_time_p95: 2100}
`, Metrics: []string{"api_response_time_p95", "error_rate"}},
	{Name: "auto-rollback off", Monitor: `  thresholds: {api_response_time_p95: 1500}
  auto_rollback: {metrics: []}
`, Metrics: []string{"api_response_time_p95", "error_rate"}},
}
