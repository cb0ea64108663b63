package trust

import (
	"fmt"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Auditor re-checks, event by event in stream order, the stream's record
// of who said what: every event signed by its publisher (an active key of
// the keyring whose role may publish its type), and every decision a
// person published carrying their valid signature over the run's plan, no
// nonce used twice. `runbook audit verify` runs it over the whole stream.
type Auditor struct {
	kr     *Keyring
	plans  map[string]string // run → plan sha256 (its change.requested)
	nonces map[string]string // run/nonce → the event id that used it
}

// NewAuditor checks against kr.
func NewAuditor(kr *Keyring) *Auditor {
	return &Auditor{kr: kr, plans: map[string]string{}, nonces: map[string]string{}}
}

// Check returns what is wrong with one event; publisher is the key of its
// Runbook-Signer header ("" when none) and publisherErr the failure of that
// header's signature.
func (a *Auditor) Check(ev *runbookv1.Event, publisher string, publisherErr error) []string {
	var out []string
	run := ev.GetRunId()
	if cr := ev.GetChangeRequested(); cr != nil {
		if _, seen := a.plans[run]; !seen {
			a.plans[run] = cr.GetPlanSha256()
		}
	}
	var role Role
	switch {
	case publisherErr != nil:
		out = append(out, fmt.Sprintf("publisher signature: %v: the stored event was altered", publisherErr))
	case publisher == "":
		out = append(out, "no publisher signature: not published by a runbook identity (an anonymous client, or --insecure-no-auth)")
	default:
		id, ok := a.kr.ByKey(publisher)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("published by key %s, which is not in the keyring", publisher))
		case !MayPublish(id.Role, ev.GetType()):
			out = append(out, fmt.Sprintf("published by %s, a %s: a %s may not publish %s", id.Name, id.Role, id.Role, ev.GetType()))
		default:
			role = id.Role
		}
	}
	// A person's decision carries their signature, whoever published it
	// (a service's own approval.refused or rollback.requested does not).
	if ev.GetSignature() != nil || (role != "" && MustBeSigned(role, ev.GetType())) {
		approvalRole := ""
		if a := approvalOf(ev); a != nil {
			approvalRole = a.GetRole()
		}
		if _, err := Verify(a.kr, ev, a.plans[run], approvalRole); err != nil {
			out = append(out, "decision signature: "+err.Error())
		} else if n := ev.GetSignature().GetNonce(); n != "" {
			if first, ok := a.nonces[run+"/"+n]; ok && first != ev.GetId() {
				out = append(out, fmt.Sprintf("decision signature replayed: its nonce was first used by %s", first))
			} else if !ok {
				a.nonces[run+"/"+n] = ev.GetId()
			}
		}
	}
	return out
}

func approvalOf(ev *runbookv1.Event) *runbookv1.Approval {
	switch p := ev.GetPayload().(type) {
	case *runbookv1.Event_ApprovalGranted:
		return p.ApprovalGranted
	case *runbookv1.Event_ApprovalRejected:
		return p.ApprovalRejected
	case *runbookv1.Event_ApprovalRefused:
		return p.ApprovalRefused
	}
	return nil
}
