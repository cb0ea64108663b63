package svcmain

import (
	"io"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// An extra handler (the reporter's read API) is served at "/" beside
// /metrics and /healthz, which keep answering.
func TestServeMetricsMountsExtraHandler(t *testing.T) {
	extra := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "extra "+r.URL.Path) })
	srv, addr, err := ServeMetrics("127.0.0.1:0", nil, prometheus.NewRegistry(), func() error { return nil }, extra)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for path, want := range map[string]string{"/": "extra /", "/api/v1/runs": "extra /api/v1/runs", "/healthz": "ok\n"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != want {
			t.Errorf("GET %s: %d %q, want %q", path, resp.StatusCode, b, want)
		}
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") == "" {
		t.Errorf("/metrics: %d", resp.StatusCode)
	}
}
