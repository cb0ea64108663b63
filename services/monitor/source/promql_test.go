package source

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The JSON in testdata/promql is what Debian's Prometheus 2.42 answered.
func TestParsePromQLResult(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string // or a testdata/promql file when it ends in .json
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
		{name: "query error (real)", body: "error.json", errHas: "query failed: bad_data: invalid parameter"},
		{name: "matrix is refused (real)", body: "matrix.json", errHas: `result type "matrix"`},
		{name: "string result", body: `{"status":"success","data":{"resultType":"string","result":[1,"x"]}}`, errHas: `result type "string"`},
		{name: "not JSON", body: `<html>502 Bad Gateway</html>`, errHas: "not a Prometheus API response"},
		{name: "no status", body: `{}`, errHas: `status ""`},
		{name: "no result type", body: `{"status":"success","data":{}}`, errHas: "no resultType"},
		{name: "value not a pair", body: `{"status":"success","data":{"resultType":"scalar","result":[1]}}`, errHas: "is not [time"},
		{name: "value not quoted", body: `{"status":"success","data":{"resultType":"scalar","result":[1,2]}}`, errHas: "not a quoted number"},
		{name: "value not a number", body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}`, errHas: `"abc" is not a number`},
		{name: "data not an object", body: `{"status":"success","data":[]}`, errHas: "data:"},
	}
	for _, tt := range tests {
		body := []byte(tt.body)
		if strings.HasSuffix(tt.body, ".json") {
			body = readTestdata(t, filepath.Join("promql", tt.body))
		}
		v, err := ParsePromQLResult(body)
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

// FuzzPromQLResult: garbage never panics, and a value is never NaN (NaN
// is no data).
func FuzzPromQLResult(f *testing.F) {
	entries, err := os.ReadDir(filepath.Join("testdata", "promql"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		f.Add(readTestdata(f, filepath.Join("promql", e.Name())))
	}
	f.Add([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1e309"]}]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := ParsePromQLResult(body)
		if err == nil && math.IsNaN(v.Value) {
			t.Fatalf("NaN value without error for %q", body)
		}
	})
}
