package source

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
)

// A Prometheus-shaped API over HTTP (the real server is in the allinone
// end-to-end test): queries become metrics, the auth header comes from the
// env var named, and empty/NaN/failed queries are missing, by metric.
func TestPrometheusQueryCollect(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var auths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("X-Token"))
		mu.Unlock()
		if r.URL.Path != "/prom/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		switch q := r.FormValue("query"); q { // POST form, as the API client sends it
		case "good":
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"42.5"]}]}}`)
		case "empty":
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
		case "nan":
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}`)
		default:
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"status":"error","errorType":"bad_data","error":"cannot parse %s"}`, q)
		}
	}))
	t.Cleanup(srv.Close)
	getenv := func(k string) (string, bool) {
		if k == "PROM_TOKEN" {
			return "s3cret-token", true
		}
		return "", false
	}
	p := plan.PrometheusQuery{
		URL:     srv.URL + "/prom/",
		Queries: map[string]string{"latency": "good", "idle": "empty", "ratio": "nan", "broken": "sum(("},
		AuthEnv: "PROM_TOKEN", AuthHeader: "X-Token",
	}
	src, err := NewPrometheusQuery(p, Config{Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	ss, err := src.Collect(context.Background())
	if len(ss) != 1 || ss[0].Metric != "latency" || ss[0].Value != 42.5 {
		t.Errorf("samples = %+v; want latency 42.5 only", ss)
	}
	miss, ok := Missing(err)
	if !ok || len(miss) != 3 {
		t.Fatalf("err = %v; want a MissingError of idle, ratio, broken", err)
	}
	if !errors.Is(miss["idle"], ErrNoData) || !errors.Is(miss["ratio"], ErrNoData) || !strings.Contains(miss["broken"].Error(), "bad_data") {
		t.Errorf("missing = %v", miss)
	}
	if strings.Contains(err.Error(), "s3cret") || strings.Contains(src.Name(), "s3cret") {
		t.Errorf("the token leaked: %v / %s", err, src.Name())
	}
	mu.Lock()
	for _, a := range auths {
		if a != "s3cret-token" {
			t.Errorf("auth header %q; want the env var's value", a)
		}
	}
	mu.Unlock()

	// The env var is not set: the source cannot be built, and says which
	// variable (not a value) is missing.
	p.AuthEnv = "PROM_OTHER"
	if _, err := NewPrometheusQuery(p, Config{Getenv: getenv}); err == nil || !strings.Contains(err.Error(), "auth_env PROM_OTHER is not set") {
		t.Errorf("err = %v", err)
	}
	// Through New it is a broken source whose rounds fail.
	b, err := New(plan.Source{PrometheusQuery: &p}, Config{Getenv: getenv})
	if err == nil || b.Kind() != KindPrometheusQuery {
		t.Errorf("New = %v, %v", b, err)
	}
	if _, err := b.Collect(context.Background()); err == nil {
		t.Error("broken source collected")
	}

	// The server is down: every query is missing.
	srv.Close()
	p.AuthEnv = ""
	down, _ := NewPrometheusQuery(p, Config{})
	ss, err = down.Collect(context.Background())
	if miss, ok := Missing(err); len(ss) != 0 || !ok || len(miss) != 4 {
		t.Errorf("server down: %v, %v", ss, err)
	}
}

func TestNewKinds(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		s    plan.Source
		kind string
		ok   bool
	}{
		{plan.Source{}, "invalid", false},
		{plan.Source{System: &plan.SystemSource{}}, KindSystem, true},
		{plan.Source{System: &plan.SystemSource{}, HTTPProbe: &plan.HTTPProbe{URL: "http://x"}}, "invalid", false},
		{plan.Source{Alertmanager: &plan.AlertmanagerSource{Match: map[string]string{"a": "b"}}}, KindAlertmanager, true},
		{plan.Source{PrometheusScrape: &plan.PrometheusScrape{URL: "http://x", Metrics: []plan.ScrapeMetric{{Name: "up"}}}}, KindPrometheusScrape, true},
		{plan.Source{PrometheusScrape: &plan.PrometheusScrape{URL: "http://x"}}, KindPrometheusScrape, false},
	} {
		src, err := New(tt.s, Config{Alerts: NewAlerts(nil)})
		if (err == nil) != tt.ok || src.Kind() != tt.kind {
			t.Errorf("New(%+v) = %s, %v; want kind %s ok %v", tt.s, src.Kind(), err, tt.kind, tt.ok)
		}
	}
}
