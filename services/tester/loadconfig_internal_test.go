package tester

import (
	"strings"
	"testing"

	"github.com/kis-core/runbook/domain/plan"
)

// A load request carrying a value from the environment to a host
// test.secret_hosts does not list refuses the whole load test before
// anything is sent; declared, it runs.
func TestLoadConfigRefusesSecretsToUndeclaredHosts(t *testing.T) {
	t.Parallel()
	const value = "Bearer load-secret-value"
	env := func(n string) (string, bool) { return value, n == "TEST_TOKEN" }
	lt := &plan.LoadTest{Requests: []plan.Request{
		{URL: "http://127.0.0.1:18080/health"},
		{URL: "http://127.0.0.1:18080/estimates", HeadersEnv: map[string]string{"Authorization": "TEST_TOKEN"}},
	}}
	for _, hosts := range [][]string{nil, {"127.0.0.1:18081"}, {"localhost"}} {
		_, err := loadConfig(lt, hosts, env)
		if err == nil || !strings.Contains(err.Error(), "load request 2: not sent: the request carries the value of TEST_TOKEN from the environment to 127.0.0.1:18080") {
			t.Fatalf("secret_hosts %v: %v", hosts, err)
		}
		if strings.Contains(err.Error(), value) {
			t.Fatalf("the error shows the value: %v", err)
		}
	}
	cfg, err := loadConfig(lt, []string{"127.0.0.1"}, env)
	if err != nil || len(cfg.Requests) != 2 || cfg.Requests[1].Header.Get("Authorization") != value {
		t.Fatalf("declared: %+v %v", cfg, err)
	}
}
