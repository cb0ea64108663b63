package eventbus

import (
	"fmt"
	"os"
)

// An event's source (Event.source, Options.Source) names the process that
// published it: "<service>/<instance>", e.g. "deployer/3f2a9c1b7d4e:1" or
// "deployer/blue". Replicas of one service differ in the instance, so the
// journal says which process acted. It is a label for people (the CLI's
// replay, the dashboard): no reader decides anything by it. Who may
// publish what is the signing key (headers Runbook-Signer and
// Runbook-Signature, domain/trust), never the source.

// DefaultInstance is a process's instance name when none is given
// (--instance, env RUNBOOK_INSTANCE): "<host>:<pid>". Two processes on one
// host differ by pid; two containers (compose replicas) by host name, the
// container's id, which a container keeps across restarts.
func DefaultInstance() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

// SourceOf is the source of the events service publishes from instance
// ("" for DefaultInstance): "<service>/<instance>".
func SourceOf(service, instance string) string {
	if instance == "" {
		instance = DefaultInstance()
	}
	return service + "/" + instance
}
