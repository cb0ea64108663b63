package plan

import (
	"fmt"
	"strings"
	"time"
)

// When the monitor starts judging (monitor.start). The watch window is
// judged once the new release serves: from deploy.done, after the deploy
// steps, the health gate and the finally steps (which restore traffic).
// Samples taken during the deploy are recorded and never judged, so a
// maintenance page the plan itself serves is not the release's error. A
// plan whose deploy steps are the change's first exposure (canary-style)
// can judge from deploy.started instead.
//
//	monitor:
//	  start: deploy_started   # default deploy_done
const (
	StartDeployDone    = "deploy_done"
	StartDeployStarted = "deploy_started"
)

var monitorStarts = []string{StartDeployDone, StartDeployStarted}

// EffectiveStart is monitor.start, default deploy_done.
func (m Monitor) EffectiveStart() string {
	if m.Start == StartDeployStarted {
		return StartDeployStarted
	}
	return StartDeployDone
}

// JudgesDuringDeploy reports monitor.start: deploy_started: the window is
// judged from deploy.started, the deploy's own samples included.
func (m Monitor) JudgesDuringDeploy() bool { return m.EffectiveStart() == StartDeployStarted }

// HealthGateTime is how long the deploy's health gate takes at least (the
// checks' initial delays: they run one after the other) and at most (each
// check's initial delay, every attempt timing out, the pauses between).
func (d Deploy) HealthGateTime() (least, most time.Duration) {
	for _, h := range d.Health {
		n := time.Duration(h.EffectiveAttempts())
		least += h.EffectiveInitialDelay()
		most += h.EffectiveInitialDelay() + n*h.EffectiveTimeout() + (n-1)*h.EffectiveInterval()
	}
	return least, most
}

// WindowText says when the judged window opens and closes in plan time:
// the line `runbook validate` prints, e.g. "opens at deploy.done: after
// the 4 deploy steps, the health gate (initial delay 30s, up to 2m15s) and
// 1 finally step; judged for 5m (closes at deploy.done + 5m); samples
// during the deploy recorded, not judged".
func (m Monitor) WindowText(d Deploy) string {
	win := FormatDuration(m.EffectiveWindow())
	parts := deployParts(d)
	if m.JudgesDuringDeploy() {
		s := "opens at deploy.started (monitor.start: deploy_started)"
		if parts != "" {
			s += ": " + parts + " are judged too"
		}
		s += fmt.Sprintf("; judged for %s (closes at deploy.started + %s)", win, win)
		if least, _ := d.HealthGateTime(); least > 0 && m.EffectiveWindow() <= least {
			s += fmt.Sprintf("; CLOSES BEFORE THE HEALTH GATE'S INITIAL DELAY (%s) ENDS: the release is never watched once it serves", FormatDuration(least))
		}
		return s
	}
	s := "opens at deploy.done"
	if parts != "" {
		s += ": after " + parts
	} else {
		s += " (the deploy has no steps)"
	}
	return s + fmt.Sprintf("; judged for %s (closes at deploy.done + %s); samples during the deploy recorded, not judged", win, win)
}

// deployParts names what runs between deploy.started and deploy.done:
// "the 4 deploy steps, the health gate (…) and 1 finally step".
func deployParts(d Deploy) string {
	var parts []string
	switch n := len(d.Steps); n {
	case 0:
	case 1:
		parts = append(parts, "the 1 deploy step")
	default:
		parts = append(parts, fmt.Sprintf("the %d deploy steps", n))
	}
	if n := len(d.Health); n > 0 {
		least, most := d.HealthGateTime()
		if n == 1 {
			parts = append(parts, fmt.Sprintf("the health gate (initial delay %s, up to %s)", FormatDuration(least), FormatDuration(most)))
		} else {
			parts = append(parts, fmt.Sprintf("the health gate (%d checks, initial delays %s in all, up to %s)", n, FormatDuration(least), FormatDuration(most)))
		}
	}
	switch n := len(d.Finally); n {
	case 0:
	case 1:
		parts = append(parts, "1 finally step")
	default:
		parts = append(parts, fmt.Sprintf("%d finally steps", n))
	}
	if len(parts) <= 1 {
		return strings.Join(parts, "")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// monitorStart checks monitor.start, and warns when a window judged from
// deploy.started closes before the health gate can pass.
func (c *checker) monitorStart(m Monitor, d Deploy) {
	c.enumText("monitor.start", m.Start, "when the monitor starts judging", monitorStarts,
		"deploy_done (the default: once the release serves, after the deploy steps, the health gate and the finally steps) or deploy_started (judge the deploy's own samples too: canary-style steps)")
	if m.Start != StartDeployStarted || len(m.Sources) == 0 {
		return
	}
	if least, _ := d.HealthGateTime(); least > 0 && m.EffectiveWindow() <= least {
		c.warnf("monitor.start", "the window (%s) judged from deploy.started closes before the health gate's initial delay (%s) ends: the release is never watched once it serves; use start: deploy_done (the default) or a longer window",
			FormatDuration(m.EffectiveWindow()), FormatDuration(least))
	}
}
