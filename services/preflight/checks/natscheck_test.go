package checks

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// The machine's own NATS (Debian's nats-server 2.9): older than runbook's
// eventbus.MinServerVersion, which does not matter to a check of a target.
const machineNATS = "127.0.0.1:4222"

// authServer is an embedded NATS server that wants a user and password.
func authServer(t *testing.T, user, password string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, Username: user, Password: password, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("embedded NATS with auth did not start")
	}
	return s
}

func TestNATS(t *testing.T) {
	t.Parallel()
	embedded := natstest.Server(t)
	sfx := suffix(t)
	password, wrong := "Pw-"+sfx, "Wrong-"+sfx
	withAuth := authServer(t, "runbook", password)
	authAddr := strings.TrimPrefix(withAuth.ClientURL(), "nats://")
	closed, silent := closedPort(t), silentListener(t)
	env := envOf(map[string]string{
		"NATS_URL":       "nats://runbook:" + password + "@" + authAddr,
		"NATS_WRONG_URL": "nats://runbook:" + wrong + "@" + authAddr,
		"NATS_TOKEN_URL": "nats://" + wrong + "@" + authAddr,
	})
	secrets := []string{password, wrong}
	r := &Runner{Env: env}
	ms := func(n int) plan.Duration { return plan.Duration{Duration: time.Duration(n) * time.Millisecond} }
	cases := []struct {
		name      string
		check     *plan.NATSCheck
		timeout   plan.Duration
		status    runbookv1.CheckStatus
		value     string
		fragments []string
	}{
		{"embedded server", &plan.NATSCheck{URL: embedded.ClientURL()}, plan.Duration{}, pass, "NATS 2.",
			[]string{"NATS: CONNECTED (" + embedded.ClientURL() + ", server 2."}},
		{"several URLs, the first dead", &plan.NATSCheck{URL: "nats://" + closed + "," + embedded.ClientURL()}, plan.Duration{}, pass, "NATS 2.",
			[]string{"NATS: CONNECTED (" + embedded.ClientURL()}},
		{"user and password from url_env", &plan.NATSCheck{URLEnv: "NATS_URL"}, plan.Duration{}, pass, "NATS 2.",
			[]string{"NATS: CONNECTED (nats://runbook:xxxxx@" + authAddr}},
		{"wrong password", &plan.NATSCheck{URLEnv: "NATS_WRONG_URL"}, plan.Duration{}, bad, "",
			[]string{"NATS: CONNECTION FAILED: nats://runbook:xxxxx@" + authAddr + ": ", "uthorization"}},
		{"wrong token", &plan.NATSCheck{URLEnv: "NATS_TOKEN_URL"}, plan.Duration{}, bad, "",
			[]string{"NATS: CONNECTION FAILED: nats://xxxxx@" + authAddr + ": ", "uthorization"}},
		{"no credentials for a server that wants them", &plan.NATSCheck{URL: withAuth.ClientURL()}, plan.Duration{}, bad, "",
			[]string{"NATS: CONNECTION FAILED", "uthorization"}},
		{"wrong port", &plan.NATSCheck{URL: "nats://" + closed}, plan.Duration{}, bad, "",
			[]string{"NATS: CONNECTION FAILED: nats://" + closed + ": ", "no servers available", "(" + closed + ": connect: connection refused)"}},
		{"server never answers", &plan.NATSCheck{URL: "nats://" + silent}, ms(300), bad, "",
			[]string{"NATS: CONNECTION FAILED: timed out after 300ms (nats://" + silent}},
		{"url_env not set", &plan.NATSCheck{URLEnv: "NATS_UNSET"}, plan.Duration{}, bad, "",
			[]string{"NATS: CONNECTION FAILED: environment variable NATS_UNSET is NOT SET"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			res := r.Run(context.Background(), 0, plan.Check{Timeout: c.timeout, NATS: c.check})
			expect(t, res, c.status, secrets, c.fragments...)
			if !strings.Contains(res.Value, c.value) {
				t.Errorf("value %q does not contain %q", res.Value, c.value)
			}
		})
	}
}

// TestNATSMachineServer connects to the machine's own NATS, a second real
// server of another version (Debian's 2.9).
func TestNATSMachineServer(t *testing.T) {
	t.Parallel()
	conn, err := net.DialTimeout("tcp", machineNATS, time.Second)
	if err != nil {
		t.Skipf("!!!!! SKIPPED: no NATS server on this machine at %s (%v): the second NATS target is NOT tested here !!!!!", machineNATS, err)
	}
	_ = conn.Close()
	res := (&Runner{}).Run(context.Background(), 0, plan.Check{NATS: &plan.NATSCheck{URL: "nats://" + machineNATS}})
	expect(t, res, pass, nil, "NATS: CONNECTED (nats://"+machineNATS+", server ")
	if !strings.HasPrefix(res.Value, "NATS 2.") {
		t.Errorf("value %q, want the server's version", res.Value)
	}
}
