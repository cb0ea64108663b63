package monitor

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus/svcmain"
	"github.com/kis-core/runbook/services/monitor/source"
)

// svcmain mounts the receiver on the monitor binary's --metrics-listen.
var _ svcmain.HTTPService = (*Service)(nil)

// The receiver over real HTTP: a webhook is stored and an alertmanager
// source built by the service reads it; garbage is refused with 400.
func TestAlertmanagerReceiver(t *testing.T) {
	t.Parallel()
	s := New(nil, Options{}, nil, nil, prometheus.NewRegistry())
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	post := func(body string) int {
		t.Helper()
		resp, err := http.Post(srv.URL+AlertmanagerPath, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	src := s.sources(plan.Monitor{Sources: []plan.Source{{Alertmanager: &plan.AlertmanagerSource{Match: map[string]string{"service": "estimator"}}}}}, time.Second, s.log)[0]
	if code := post(`{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"Down","service":"estimator"},"startsAt":"2026-01-01T00:00:00Z"}]}`); code != http.StatusOK {
		t.Fatalf("webhook: %d", code)
	}
	ss, err := src.Collect(context.Background())
	if err != nil || len(ss) != 1 || ss[0].Metric != "alert:Down" || ss[0].Value != 1 {
		t.Fatalf("samples = %v, %v; want alert:Down = 1", ss, err)
	}
	if src.Kind() != source.KindAlertmanager {
		t.Errorf("kind %s", src.Kind())
	}
	for _, bad := range []string{`nope`, `{"version":"2"}`} {
		if code := post(bad); code != http.StatusBadRequest {
			t.Errorf("%s: %d; want 400", bad, code)
		}
	}
	resp, err := http.Get(srv.URL + AlertmanagerPath)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET: %d; want 405", resp.StatusCode)
		}
	}
}
