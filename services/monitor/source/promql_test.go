package source

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// answer is one HTTP answer of a Prometheus-shaped server.
type answer struct {
	status int
	body   []byte
}

// promServer answers /api/v1/query (POST form or GET, as the API client
// sends it) with what answer returns for the query.
func promServer(t testing.TB, answer func(query string) answer) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		a := answer(r.FormValue("query"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		_, _ = w.Write(a.body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func querySource(t testing.TB, url string) *PrometheusQuery {
	t.Helper()
	q, err := NewPrometheusQuery(plan.PrometheusQuery{URL: url, Queries: map[string]string{"q": "up"}}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// The JSON in testdata/promql is what Debian's Prometheus 2.42 answered
// (error.json with its status, 400); client_golang's API client reads it
// and PromQLValueOf makes it a metric's value.
func TestPrometheusQueryResults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string // or a testdata/promql file when it ends in .json
		status int    // default 200
		want   float64
		noData bool
		errHas string
		labels string
	}{
		{name: "vector of one (real)", body: "vector_p95.json", want: 9.74561403508772},
		{name: "scalar (real)", body: "scalar.json", want: 50},
		{name: "vector of many takes the highest", body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"path":"/a"},"value":[1,"3"]},{"metric":{"path":"/b"},"value":[1,"7.5"]},{"metric":{"path":"/c"},"value":[1,"NaN"]}]}}`, want: 7.5, labels: "/b"},
		{name: "empty vector is no data (real)", body: "empty.json", noData: true},
		{name: "a ratio over no traffic is no data (real)", body: "empty_ratio.json", noData: true},
		{name: "NaN is no data (real)", body: "vector_nan.json", noData: true},
		{name: "NaN scalar is no data", body: `{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}`, noData: true},
		{name: "+Inf is a value (quantile in the +Inf bucket)", body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"+Inf"]}]}}`, want: math.Inf(1)},
		{name: "query error (real)", body: "error.json", status: http.StatusBadRequest, errHas: "query failed: bad_data: invalid parameter"},
		{name: "error status with a success body", body: "error.json", errHas: "query failed: bad_data: invalid parameter"},
		{name: "matrix is refused (real)", body: "matrix.json", errHas: `result type "matrix": the query must give an instant vector or a scalar`},
		{name: "string result", body: `{"status":"success","data":{"resultType":"string","result":[1,"x"]}}`, errHas: `not a Prometheus API response: unexpected value type "string"`},
		{name: "not JSON", body: `<html>502 Bad Gateway</html>`, errHas: "not a Prometheus API response"},
		{name: "a proxy's error page", body: `<html>502 Bad Gateway</html>`, status: http.StatusBadGateway, errHas: "query failed: server_error: server error: 502"},
		{name: "no status", body: `{}`, errHas: "not a Prometheus API response: no result"},
		{name: "no result type", body: `{"status":"success","data":{}}`, errHas: "not a Prometheus API response: unexpected value type"},
		{name: "value not a pair", body: `{"status":"success","data":{"resultType":"scalar","result":[1]}}`, errHas: "not a Prometheus API response"},
		{name: "value not quoted", body: `{"status":"success","data":{"resultType":"scalar","result":[1,2]}}`, errHas: "not a Prometheus API response"},
		{name: "value not a number", body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}`, errHas: "not a Prometheus API response"},
		{name: "data not an object", body: `{"status":"success","data":[]}`, errHas: "not a Prometheus API response"},
	}
	answers := map[string]answer{}
	for _, tt := range tests {
		body := []byte(tt.body)
		if strings.HasSuffix(tt.body, ".json") {
			body = readTestdata(t, filepath.Join("promql", tt.body))
		}
		answers[tt.name] = answer{status: max(tt.status, http.StatusOK), body: body}
	}
	src := querySource(t, promServer(t, func(q string) answer { return answers[q] }).URL)
	for _, tt := range tests {
		v, err := src.Query(context.Background(), tt.name)
		switch {
		case tt.noData:
			if !errors.Is(err, ErrNoData) {
				t.Errorf("%s: err = %v; want ErrNoData", tt.name, err)
			}
		case tt.errHas != "":
			if err == nil || errors.Is(err, ErrNoData) || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("%s: err = %v; want an error containing %q", tt.name, err, tt.errHas)
			}
		case err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case v.Value != tt.want:
			t.Errorf("%s: value %v; want %v", tt.name, v.Value, tt.want)
		case tt.labels != "" && v.Labels["path"] != tt.labels:
			t.Errorf("%s: labels %v; want path %s", tt.name, v.Labels, tt.labels)
		}
	}
}

// An answer larger than 8 MiB is refused, not read whole.
func TestPrometheusQueryAnswerBound(t *testing.T) {
	t.Parallel()
	big := []byte(`{"status":"success","data":{"resultType":"vector","result":[` + strings.Repeat(`{"metric":{},"value":[1,"1"]},`, maxQueryBody/28) + `{"metric":{},"value":[1,"1"]}]}}`)
	src := querySource(t, promServer(t, func(string) answer { return answer{http.StatusOK, big} }).URL)
	if _, err := src.Query(context.Background(), "big"); err == nil || !strings.Contains(err.Error(), "larger than 8 MiB") {
		t.Errorf("err = %v; want the answer refused as larger than 8 MiB", err)
	}
}

// FuzzPromQLResult: whatever a server answers, with whatever status, a
// query never panics and a value is never NaN (NaN is no data).
func FuzzPromQLResult(f *testing.F) {
	entries, err := os.ReadDir(filepath.Join("testdata", "promql"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		f.Add(uint16(200), readTestdata(f, filepath.Join("promql", e.Name())))
	}
	f.Add(uint16(400), readTestdata(f, filepath.Join("promql", "error.json")))
	f.Add(uint16(503), []byte(`{"status":"error","errorType":"unavailable","error":"shutting down"}`))
	f.Add(uint16(200), []byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1e309"]}]}}`))
	var next atomic.Pointer[answer]
	src := querySource(f, promServer(f, func(string) answer { return *next.Load() }).URL)
	f.Fuzz(func(t *testing.T, status uint16, body []byte) {
		next.Store(&answer{status: 200 + int(status)%400, body: body})
		v, err := src.Query(context.Background(), "fuzz")
		if err == nil && math.IsNaN(v.Value) {
			t.Fatalf("NaN value without error for %d %q", status, body)
		}
		if err != nil && err.Error() == "" {
			t.Fatal(fmt.Sprint("an empty error for ", status, body))
		}
	})
}
