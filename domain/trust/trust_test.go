package trust

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

func key(t *testing.T) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return kp, pub
}

func approval(run string) *runbookv1.Event {
	return &runbookv1.Event{RunId: run, Type: "approval.granted", Payload: &runbookv1.Event_ApprovalGranted{ApprovalGranted: &runbookv1.Approval{Role: "technical_approval"}}}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	tina, tinaPub := key(t)
	rita, ritaPub := key(t)
	old, oldPub := key(t)
	stranger, _ := key(t)
	rep, repPub := key(t)
	now := time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)
	kr := &Keyring{Identities: []Identity{
		{Name: "tina", Role: Approver, PublicKey: tinaPub},
		{Name: "rita", Role: Requester, PublicKey: ritaPub},
		{Name: "old", Role: Approver, PublicKey: oldPub, Revoked: now.Add(-time.Hour)},
		{Name: "reporter", Role: Reporter, PublicKey: repPub},
	}}
	const plan = "aa11"
	signed := func(kp nkeys.KeyPair, ev *runbookv1.Event, planSHA, role string) *runbookv1.Event {
		if err := Sign(kp, ev, planSHA, role, now); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	cases := []struct {
		name string
		ev   *runbookv1.Event
		want string // "" verifies; else a part of the error
	}{
		{"good", signed(tina, approval("R1"), plan, "technical_approval"), ""},
		{"unsigned", approval("R1"), "must be signed"},
		{"other run", func() *runbookv1.Event {
			ev := signed(tina, approval("R0"), plan, "technical_approval")
			ev.RunId = "R1"
			return ev
		}(), "does not verify"},
		{"other plan", signed(tina, approval("R1"), "bb22", "technical_approval"), "binds to the exact plan"},
		{"other role", signed(tina, approval("R1"), plan, "security_approval"), "claims role technical_approval"},
		{"altered signature", func() *runbookv1.Event {
			ev := signed(tina, approval("R1"), plan, "technical_approval")
			ev.Signature.Sig[3] ^= 1
			return ev
		}(), "does not verify"},
		{"key swapped", func() *runbookv1.Event {
			ev := signed(stranger, approval("R1"), plan, "technical_approval")
			ev.Signature.Key = tinaPub
			return ev
		}(), "does not verify"},
		{"unknown key", signed(stranger, approval("R1"), plan, "technical_approval"), "unknown key"},
		{"revoked", signed(old, approval("R1"), plan, "technical_approval"), "revoked"},
		{"requester may not approve", signed(rita, approval("R1"), plan, "technical_approval"), "may not make approval.granted"},
		// The reporter relays people's approvals: its own key signs none.
		{"a service's key", signed(rep, approval("R1"), plan, "technical_approval"), "signed by the person who makes it"},
		{"reused for another decision", func() *runbookv1.Event {
			ev := signed(tina, approval("R1"), plan, "technical_approval")
			ev.Type = "approval.rejected"
			return ev
		}(), "cannot be reused for another decision"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Verify(kr, c.ev, plan, "technical_approval")
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want == "" && got.Identity.Name != "tina":
				t.Fatalf("signer %q", got.Identity.Name)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want it to say %q", err, c.want)
			}
		})
	}
}

func TestRolesTable(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		role Role
		typ  string
		may  bool
	}{
		{Reporter, "report.ready", true}, {Requester, "report.ready", false}, {Deployer, "report.ready", false},
		{Approver, "approval.granted", true}, {Requester, "approval.granted", false},
		{Requester, "change.requested", true}, {Approver, "change.requested", false}, {Viewer, "change.requested", false},
		{Deployer, "deploy.done", true}, {Tester, "deploy.done", false}, {Monitor, "rollback.requested", true},
		{Admin, "anything.at.all", true},
	} {
		if got := MayPublish(c.role, c.typ); got != c.may {
			t.Errorf("MayPublish(%s, %s) = %v, want %v", c.role, c.typ, got, c.may)
		}
	}
	// The reporter relays people's decisions (the dashboard's), which must
	// then carry the person's signature; a service's own do not.
	for _, c := range []struct {
		role   Role
		typ    string
		signed bool
	}{
		{Reporter, "approval.granted", true}, {Reporter, "run.cancelled", true}, {Reporter, "rollback.requested", true},
		{Reporter, "report.ready", false}, {Monitor, "rollback.requested", false}, {Deployer, "approval.refused", false},
		{Requester, "rollback.requested", true}, {Approver, "approval.rejected", true}, {Admin, "approval.granted", true},
	} {
		if !MayPublish(c.role, c.typ) {
			t.Errorf("MayPublish(%s, %s) = false", c.role, c.typ)
		}
		if got := MustBeSigned(c.role, c.typ); got != c.signed {
			t.Errorf("MustBeSigned(%s, %s) = %v, want %v", c.role, c.typ, got, c.signed)
		}
	}
	if !slices.Contains(Publishes(Reporter), "approval.granted") || slices.Contains(Publishes(Monitor), "approval.granted") {
		t.Errorf("Publishes(reporter) %v, Publishes(monitor) %v", Publishes(Reporter), Publishes(Monitor))
	}
	if _, err := ParseRole("root"); err == nil || !strings.Contains(err.Error(), "requester") {
		t.Errorf("ParseRole(root): %v", err)
	}
}

func TestKeyringRejectsDuplicatesAndBadNames(t *testing.T) {
	t.Parallel()
	_, pub := key(t)
	for _, bad := range []string{
		`{"identities":[{"name":"Tina Tech","role":"approver","public_key":"` + pub + `"}]}`,
		`{"identities":[{"name":"tina","role":"root","public_key":"` + pub + `"}]}`,
		`{"identities":[{"name":"tina","role":"approver","public_key":"SUABC"}]}`,
		`{"identities":[{"name":"a","role":"approver","public_key":"` + pub + `"},{"name":"b","role":"viewer","public_key":"` + pub + `"}]}`,
	} {
		if _, err := ParseKeyring([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// The auditor re-checks the stream's copy: an event whose decision
// signature was altered, one without a publisher signature, one whose
// publisher may not publish its type, and a replayed nonce are named; a
// faithful record passes.
func TestAuditor(t *testing.T) {
	t.Parallel()
	rita, ritaPub := key(t)
	tina, tinaPub := key(t)
	_, depPub := key(t)
	_, repPub := key(t)
	kr := &Keyring{Identities: []Identity{
		{Name: "rita", Role: Requester, PublicKey: ritaPub},
		{Name: "tina", Role: Approver, PublicKey: tinaPub},
		{Name: "deployer", Role: Deployer, PublicKey: depPub},
		{Name: "reporter", Role: Reporter, PublicKey: repPub},
	}}
	now := time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)
	cr := &runbookv1.Event{Id: "R/cr", RunId: "R", Type: "change.requested", Payload: &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{PlanSha256: "aa11"}}}
	if err := Sign(rita, cr, "aa11", "requester", now); err != nil {
		t.Fatal(err)
	}
	ok := approval("R")
	ok.Id = "R/ok"
	if err := Sign(tina, ok, "aa11", "technical_approval", now); err != nil {
		t.Fatal(err)
	}
	a := NewAuditor(kr)
	if p := a.Check(cr, ritaPub, nil); len(p) != 0 {
		t.Fatalf("faithful change request: %v", p)
	}
	if p := a.Check(ok, tinaPub, nil); len(p) != 0 {
		t.Fatalf("faithful approval: %v", p)
	}
	// A decision made on the dashboard: signed by tina, published by the
	// reporter.
	relayed := &runbookv1.Event{Id: "R/relayed", RunId: "R", Type: "approval.rejected", Payload: &runbookv1.Event_ApprovalRejected{ApprovalRejected: &runbookv1.Approval{Role: "technical_approval"}}}
	if err := Sign(tina, relayed, "aa11", "technical_approval", now); err != nil {
		t.Fatal(err)
	}
	if p := a.Check(relayed, repPub, nil); len(p) != 0 {
		t.Fatalf("relayed rejection: %v", p)
	}
	unsignedRelay := &runbookv1.Event{Id: "R/cancel", RunId: "R", Type: "run.cancelled", Payload: &runbookv1.Event_RunCancelled{RunCancelled: &runbookv1.RunEnded{}}}
	altered := approval("R")
	altered.Id = "R/altered"
	if err := Sign(tina, altered, "aa11", "technical_approval", now); err != nil {
		t.Fatal(err)
	}
	altered.Signature.Time = nil // edited after signing
	replayed := approval("R")
	replayed.Id, replayed.Signature = "R/replayed", ok.Signature
	forgedReport := &runbookv1.Event{Id: "R/report", RunId: "R", Type: "report.ready", Payload: &runbookv1.Event_ReportReady{ReportReady: &runbookv1.ReportReady{}}}
	for _, c := range []struct {
		name      string
		ev        *runbookv1.Event
		publisher string
		want      string
	}{
		{"altered signature", altered, tinaPub, "does not verify"},
		{"replayed nonce", replayed, tinaPub, "replayed"},
		{"no publisher", forgedReport, "", "no publisher signature"},
		{"wrong publisher", forgedReport, ritaPub, "may not publish report.ready"},
		{"unknown publisher", forgedReport, "UNKNOWN", "not in the keyring"},
		{"relayed unsigned", unsignedRelay, repPub, "not signed"},
	} {
		p := a.Check(c.ev, c.publisher, nil)
		if len(p) == 0 || !strings.Contains(strings.Join(p, "; "), c.want) {
			t.Errorf("%s: %v, want %q", c.name, p, c.want)
		}
	}
}
