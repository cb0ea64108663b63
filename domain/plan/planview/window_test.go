package planview

import "testing"

// The monitor section says when the judged window opens and closes in plan
// time (plan.Monitor.WindowText): at deploy.done by default, after the
// deploy steps, the health gate and the finally steps, the deploy's own
// samples recorded but not judged; at deploy.started with monitor.start:
// deploy_started.
func TestDescribeWindowOpens(t *testing.T) {
	t.Parallel()
	const deploy = "deploy:\n  steps:\n" +
		"    - {name: maintenance on, command: {argv: [\"true\"]}}\n" +
		"    - {name: migrate, command: {argv: [\"true\"]}}\n" +
		"    - {name: switch, command: {argv: [\"true\"]}}\n" +
		"    - {name: reload, command: {argv: [\"true\"]}}\n" +
		"  health:\n    - {url: \"http://app/health\"}\n" +
		"  finally:\n    - {name: maintenance off, command: {argv: [\"true\"]}}\n"
	const mon = "monitor:\n  window: 5m\n  sources:\n    - http_probe: {url: http://api.internal/ping}\n"
	runDescribeCases(t, "MONITOR", []describeCase{
		{
			name: "deploy_done (default)",
			yaml: deploy + mon,
			want: []string{
				"  window 5m, sample every 30s, baseline: up to 1m of samples before the deploy starts (default)\n" +
					"  window opens at deploy.done: after the 4 deploy steps, the health gate (initial delay 30s, up to 2m50s) and 1 finally step; judged for 5m (closes at deploy.done + 5m); samples during the deploy recorded, not judged\n",
			},
			notWant: []string{"deploy.started"},
		},
		{
			name: "deploy_started",
			yaml: deploy + mon + "  start: deploy_started\n",
			want: []string{
				"  window opens at deploy.started (monitor.start: deploy_started): the 4 deploy steps, the health gate (initial delay 30s, up to 2m50s) and 1 finally step are judged too; judged for 5m (closes at deploy.started + 5m)\n",
			},
			notWant: []string{"not judged", "deploy.done"},
		},
		{
			name:    "no sources: no window line",
			yaml:    deploy + "monitor:\n  window: 5m\n",
			want:    []string{"sources: none — nothing to watch"},
			notWant: []string{"opens at"},
		},
	})
}
