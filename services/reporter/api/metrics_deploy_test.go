package api_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/eventbus"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/api"
)

// The metrics answer carries the deploy's span (shaded on the dashboard's
// charts) and each sample's during_deploy flag; the window starts when it
// opened (deploy.done), not at monitor.started.
func TestMetricsShowTheDeploySpan(t *testing.T) {
	at := func(s int) *timestamppb.Timestamp { return timestamppb.New(t0.Add(time.Duration(s) * time.Second)) }
	build := func(judgeFrom string, completed bool) *api.Metrics {
		var evs []eventbus.Envelope
		add := func(s int, p any) {
			ev := eventbus.New("run-x", p)
			ev.Time = at(s)
			evs = append(evs, eventbus.Envelope{Event: ev})
		}
		add(0, requested("CR-1", "upgrade"))
		add(1, &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}})
		add(2, &runbookv1.Event_MonitorStarted{MonitorStarted: &runbookv1.MonitorStarted{Window: "10s", Interval: "1s", JudgeFrom: judgeFrom}})
		add(5, &runbookv1.Event_DeployDone{DeployDone: &runbookv1.DeployFinished{StepsSucceeded: 1}})
		if completed {
			add(15, &runbookv1.Event_MonitorCompleted{MonitorCompleted: &runbookv1.MonitorCompleted{WindowOpened: at(5), DuringDeploySamples: 1}})
		}
		samples := []*runbookv1.MetricSample{
			{RunId: "run-x", Metric: "error_rate", Value: 1, Source: "http_probe", Time: at(3), DuringDeploy: judgeFrom == "deploy_done"},
			{RunId: "run-x", Metric: "error_rate", Value: 0, Source: "http_probe", Time: at(6)},
		}
		return api.BuildMetrics(&reporter.Run{RunSummary: reporter.RunSummary{RunID: "run-x"}, Events: evs}, samples)
	}

	m := build("deploy_done", false)
	if m.Deploy == nil || !m.Deploy.Start.Equal(t0.Add(time.Second)) || !m.Deploy.End.Equal(t0.Add(5*time.Second)) || m.Deploy.Judged {
		t.Errorf("deploy span %+v; want deploy.started → deploy.done, not judged", m.Deploy)
	}
	if !m.Window.Start.Equal(t0.Add(5*time.Second)) || !m.Window.End.Equal(t0.Add(15*time.Second)) {
		t.Errorf("window %+v; want deploy.done + the plan's 10s while it runs", m.Window)
	}
	if pts := m.Series[0].Points; len(pts) != 2 || !pts[0].D || pts[1].D {
		t.Errorf("points %+v; want the first marked during the deploy", pts)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if js := string(b); !strings.Contains(js, `"deploy":{"start":"2026-03-01T10:00:01Z","end":"2026-03-01T10:00:05Z","judged":false}`) || !strings.Contains(js, `"d":true`) {
		t.Errorf("JSON lacks the deploy span or the flag: %s", js)
	}

	if m := build("deploy_done", true); !m.Window.Start.Equal(t0.Add(5*time.Second)) || !m.Window.Done || !m.Window.End.Equal(t0.Add(15*time.Second)) {
		t.Errorf("completed window %+v; want window_opened → monitor.completed", m.Window)
	}
	if m := build("deploy_started", false); !m.Deploy.Judged || !m.Window.Start.Equal(t0.Add(2*time.Second)) || m.Series[0].Points[0].D {
		t.Errorf("deploy_started: span %+v window %+v; want judged, the window from monitor.started", m.Deploy, m.Window)
	}
}
