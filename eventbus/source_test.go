package eventbus_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/kis-core/runbook/eventbus"
)

// A source is "<service>/<instance>"; without an instance, this process's
// host and pid.
func TestSourceOf(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := eventbus.SourceOf("deployer", ""), fmt.Sprintf("deployer/%s:%d", host, os.Getpid()); got != want {
		t.Errorf("SourceOf(deployer, \"\") = %q, want %q", got, want)
	}
	if got := eventbus.SourceOf("monitor", "blue"); got != "monitor/blue" {
		t.Errorf("SourceOf(monitor, blue) = %q", got)
	}
}
