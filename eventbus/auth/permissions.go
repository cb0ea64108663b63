// Package auth puts domain/trust's table into force on the NATS server:
// the server-side permissions of every identity, the embedded server's
// nkey users, the identity files on disk (seeds and the keyring) and the
// client options that authenticate with them.
package auth

import (
	"slices"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kis-core/runbook/domain/trust"
)

// Streams are the two streams every identity may read.
var readStreams = []string{"RUNBOOK", "RUNBOOK_METRICS"}

// auditStream is the stream whose durable consumers the services own.
const auditStream = "RUNBOOK"

// maxDeliveriesAdvisory is eventbus.MaxDeliveriesAdvisoryPrefix (this
// package cannot import eventbus): JetStream's word, per consumer, that a
// message ran out of deliveries.
const maxDeliveriesAdvisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"

// InboxPrefix is where an identity's replies arrive: _INBOX.<public key>.
// Only that identity may subscribe there, so no one reads another's
// replies (JetStream deliveries and acks travel as replies). The nats CLI
// takes it as --inbox-prefix.
func InboxPrefix(publicKey string) string { return "_INBOX." + publicKey }

// Permissions are what the server lets an identity with this role and
// public key do. Admin may do everything. Everyone else:
//
//   - publishes only the event types trust.Publishes(role) lists, on
//     runbook.<run>.<type> (the monitor also its samples);
//   - reads both streams: stream info, message get, and ephemeral ordered
//     consumers (create, fetch, info, delete) on any name but a service's
//     durable;
//   - services create and consume their own durable consumers and ack only
//     their messages; nobody but admin deletes a durable, and nobody but
//     admin creates, updates, purges or deletes a stream;
//   - subscribes only to its own inbox, to the live alerts
//     (runbook.*.threshold.violated) and, a service, to the MAX_DELIVERIES
//     advisories of its own durables.
func Permissions(role trust.Role, publicKey string) *server.Permissions {
	if role == trust.Admin {
		return &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: []string{">"}},
			Subscribe: &server.SubjectPermission{Allow: []string{">"}},
		}
	}
	var allow, deny []string
	for _, typ := range trust.Publishes(role) {
		allow = append(allow, "runbook.*."+typ)
	}
	if role == trust.Monitor {
		allow = append(allow, "runbook_metrics.>")
	}
	allow = append(allow, "$JS.API.INFO")
	for _, st := range readStreams {
		allow = append(allow,
			"$JS.API.STREAM.INFO."+st,
			"$JS.API.STREAM.MSG.GET."+st,
			"$JS.API.DIRECT.GET."+st,
			"$JS.API.DIRECT.GET."+st+".>",
			"$JS.API.CONSUMER.CREATE."+st+".*",
			"$JS.API.CONSUMER.CREATE."+st+".*.>",
			"$JS.API.CONSUMER.INFO."+st+".*",
			"$JS.API.CONSUMER.MSG.NEXT."+st+".*",
			"$JS.API.CONSUMER.DELETE."+st+".*",
		)
	}
	own := trust.Durables(role)
	subscribe := []string{InboxPrefix(publicKey) + ".>", "runbook.*.threshold.violated"}
	for _, d := range own {
		allow = append(allow, "$JS.ACK."+auditStream+"."+d+".>")
		// The server's word that the durable gave up on a message: the
		// service records it as event.dead_lettered (eventbus.Router).
		subscribe = append(subscribe, maxDeliveriesAdvisory+"."+auditStream+"."+d)
	}
	for _, d := range trust.AllDurables() {
		// Nobody but admin deletes a durable, its own included.
		deny = append(deny, "$JS.API.CONSUMER.DELETE."+auditStream+"."+d)
		if slices.Contains(own, d) {
			continue
		}
		deny = append(deny,
			"$JS.API.CONSUMER.CREATE."+auditStream+"."+d,
			"$JS.API.CONSUMER.CREATE."+auditStream+"."+d+".>",
			"$JS.API.CONSUMER.MSG.NEXT."+auditStream+"."+d,
		)
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: allow, Deny: deny},
		Subscribe: &server.SubjectPermission{Allow: subscribe},
	}
}

// Users are the embedded server's nkey users: every identity of the
// keyring that is not revoked, with its permissions. A revoked or removed
// key cannot connect; an anonymous client is refused.
func Users(kr *trust.Keyring) []*server.NkeyUser {
	var out []*server.NkeyUser
	for _, id := range kr.Identities {
		if !id.Revoked.IsZero() {
			continue
		}
		out = append(out, &server.NkeyUser{Nkey: id.PublicKey, Permissions: Permissions(id.Role, id.PublicKey)})
	}
	return out
}
