// Package trust is who may say what on runbook's bus: the roles, the event
// types each role may publish, the keyring of identities (Ed25519 nkeys)
// and the signatures people put on their decisions. It is pure: the NATS
// server's permissions (eventbus/auth) and `runbook audit verify` are both
// derived from the table here, so the two can never disagree.
package trust

import (
	"fmt"
	"slices"
	"strings"
)

// Role of an identity.
type Role string

// The service roles: one identity each, made by `runbook serve` on first
// start (or by `runbook identity create NAME --role ROLE` for a cluster).
const (
	Preflight Role = "preflight"
	Deployer  Role = "deployer"
	Monitor   Role = "monitor"
	Tester    Role = "tester"
	Reporter  Role = "reporter"
)

// The people's roles.
const (
	// Requester submits changes and may cancel them or ask for a rollback.
	Requester Role = "requester"
	// Approver approves or rejects runs.
	Approver Role = "approver"
	// Viewer reads: runs, reports, the live alerts, the read API.
	Viewer Role = "viewer"
	// Admin may do everything, including creating, changing and deleting
	// streams and consumers. Keep its key offline.
	Admin Role = "admin"
)

// ServiceRoles are the roles of the five services, in pipeline order.
var ServiceRoles = []Role{Preflight, Deployer, Monitor, Tester, Reporter}

// PeopleRoles are the roles `runbook identity create` gives people.
var PeopleRoles = []Role{Requester, Approver, Viewer, Admin}

// DeadLettered is published by every service's consume loop.
const DeadLettered = "event.dead_lettered"

// publishes is the table: the event types each role may publish. Admin
// may publish every type; Viewer none.
var publishes = map[Role][]string{
	// revert.requested goes on the run a revert run undoes (its plan's
	// reverts.run), once that run's pre-flight checked it.
	Preflight: {"preflight.started", "preflight.passed", "preflight.failed", "backup.done", "plan.assessed", "change.rejected", "revert.requested", DeadLettered},
	Deployer: {"deploy.started", "deploy.step.started", "deploy.step.succeeded", "deploy.step.failed", "deploy.step.output",
		"deploy.done", "deploy.failed", "rollback.requested", "rollback.started", "rollback.step.started",
		"rollback.step.succeeded", "rollback.step.failed", "rollback.done", "rollback.failed",
		"run.waiting", "run.expired", "run.failed", "approval.refused", "backup.done", DeadLettered},
	Monitor: {"monitor.started", "threshold.violated", "monitor.completed", "rollback.requested", DeadLettered},
	Tester: {"test.started", "test.smoke.passed", "test.smoke.failed", "test.load.progress", "test.load.passed",
		"test.load.failed", "test.passed", "test.failed", "rollback.requested", "rollback.verified", "rollback.verify.failed", DeadLettered},
	Reporter:  {"report.ready", "notification.sent", "notification.failed", DeadLettered},
	Requester: {"change.requested", "run.cancelled", "rollback.requested"},
	Approver:  {"approval.granted", "approval.rejected", "approval.refused"},
	Viewer:    nil,
}

// relays are the people's decisions a service may publish on a person's
// behalf, only ever with that person's signature: the reporter's read API
// publishes the decisions made on the dashboard, signed in the browser by
// the person's own key (docs/security.md, "Acting from the dashboard").
// Such an event must carry a valid signature (MustBeSigned): the deployer
// and audit verify check it as they check the person's own.
var relays = map[Role][]string{
	Reporter: {"approval.granted", "approval.rejected", "approval.refused", "run.cancelled", "rollback.requested"},
}

// Relays lists the decisions role publishes on a person's behalf.
func Relays(r Role) []string { return slices.Clone(relays[r]) }

// MustBeSigned reports whether an event of type typ published by role r
// must carry a person's valid decision signature: a decision a person
// published, or one a service relays for a person (a service's own
// rollback.requested or approval.refused is not signed).
func MustBeSigned(r Role, typ string) bool {
	if !IsDecision(typ) {
		return false
	}
	return !r.Service() || slices.Contains(relays[r], typ)
}

// Decisions are the event types people sign: the publisher is a person and
// the event carries a Signature.
var Decisions = []string{"change.requested", "run.cancelled", "rollback.requested", "approval.granted", "approval.rejected", "approval.refused"}

// IsDecision reports whether typ is signed by a person when a person
// publishes it (rollback.requested is also published, unsigned, by the
// deployer, the monitor and the tester).
func IsDecision(typ string) bool { return slices.Contains(Decisions, typ) }

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	_, ok := publishes[r]
	return ok || r == Admin
}

// Service reports whether r is one of the five services' roles.
func (r Role) Service() bool { return slices.Contains(ServiceRoles, r) }

// ParseRole reads a role name, with an error listing the valid ones.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if !r.Valid() {
		return "", fmt.Errorf("unknown role %q: use one of %s", s, strings.Join(roleNames(), ", "))
	}
	return r, nil
}

func roleNames() []string {
	var out []string
	for _, r := range append(slices.Clone(PeopleRoles), ServiceRoles...) {
		out = append(out, string(r))
	}
	return out
}

// Publishes lists the event types role may publish, the decisions it
// relays included (nil for admin, who may publish any: see MayPublish).
func Publishes(r Role) []string { return append(slices.Clone(publishes[r]), relays[r]...) }

// MayPublish reports whether role r may publish events of type typ (a
// relayed decision only with its person's signature: MustBeSigned).
func MayPublish(r Role, typ string) bool {
	return r == Admin || slices.Contains(publishes[r], typ) || slices.Contains(relays[r], typ)
}

// Durables are the durable consumers each service role consumes. Their
// names never change (a new name re-consumes the whole stream).
var durables = map[Role][]string{
	Preflight: {"preflight"},
	Deployer:  {"deployer"},
	Monitor:   {"monitor"},
	Tester:    {"tester"},
	Reporter:  {"notifier"},
}

// Durables lists the durable consumers role r consumes.
func Durables(r Role) []string { return slices.Clone(durables[r]) }

// AllDurables lists every service's durable consumer.
func AllDurables() []string {
	var out []string
	for _, r := range ServiceRoles {
		out = append(out, durables[r]...)
	}
	return out
}
