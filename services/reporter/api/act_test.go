package api_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
	"github.com/kis-core/runbook/services/reporter"
	"github.com/kis-core/runbook/services/reporter/api"
)

const actPlan = `change_request: {id: CR-ACT, title: "act from the dashboard", type: maintenance, priority: low}
requester: {name: rita, role: SRE, contact: rita@example.com}
approval:
  technical_approval: {approver: tina}
deploy:
  steps:
    - {name: noop, command: {argv: ["true"]}}
`

// actFixture is the API on a real authenticated NATS server: it publishes
// as the reporter's identity, as runbook serve's does; the test is the
// browser (it holds the people's seeds) and the admin (it publishes what
// the other services would).
type actFixture struct {
	srv    *httptest.Server
	admin  *eventbus.Bus
	ids    auth.Store
	tokens map[string]string
	keys   map[string]nkeys.KeyPair
}

func newActFixture(t *testing.T) *actFixture {
	t.Helper()
	ns := natstest.SecureServer(t)
	f := &actFixture{ids: ns.Store, tokens: map[string]string{}, keys: map[string]nkeys.KeyPair{}}
	for name, role := range map[string]trust.Role{"rita": trust.Requester, "tina": trust.Approver, "mallory": trust.Approver, "vera": trust.Viewer} {
		c, err := ns.Store.Create(name, role, "")
		if err != nil {
			t.Fatal(err)
		}
		id, err := auth.Open(c.SeedPath)
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[name], f.keys[name] = c.Token, id.KP
	}
	ns.Reload(t)
	bus := func(name string) *eventbus.Bus {
		id, err := auth.Open(ns.Store.SeedPath(name))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := eventbus.NewBus(ctx, ns.ConnAs(t, name), eventbus.Options{Source: name + "/test", Provision: name == "admin", Signer: id.KP})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	f.admin = bus("admin")
	kf := auth.NewKeyringFile(ns.Store.KeyringPath())
	a := api.New(api.Options{Model: reporter.NewMemory(), Bus: bus("reporter"), Authorize: kf.Authorize, Keyring: kf})
	f.srv = httptest.NewServer(a.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

// submit publishes a run of actPlan, signed by rita, that passed
// pre-flight and waits for technical_approval.
func (f *actFixture) submit(t *testing.T, run string) string {
	t.Helper()
	sha := plan.Hash([]byte(actPlan))
	cr := eventbus.New(run, &runbookv1.Event_ChangeRequested{ChangeRequested: &runbookv1.ChangeRequested{PlanYaml: actPlan, PlanSha256: sha, PlanSource: "plan.yaml"}})
	cr.Actor = "rita"
	cr.Time = timestamppb.Now()
	if err := trust.Sign(f.keys["rita"], cr, sha, string(trust.Requester), cr.Time.AsTime()); err != nil {
		t.Fatal(err)
	}
	f.publish(t, cr,
		eventbus.New(run, &runbookv1.Event_PreflightPassed{PreflightPassed: &runbookv1.PreflightResult{}}),
		eventbus.New(run, &runbookv1.Event_PlanAssessed{PlanAssessed: &runbookv1.PlanAssessed{Level: "LOW", ApprovalsRequired: []string{"technical_approval"}}}))
	return sha
}

func (f *actFixture) publish(t *testing.T, evs ...*runbookv1.Event) {
	t.Helper()
	for _, ev := range evs {
		if _, err := f.admin.Publish(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
}

// post sends a decision as name's browser would (its token; JSON).
func (f *actFixture) post(t *testing.T, name, path string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if name != "" {
		req.Header.Set("Authorization", "Bearer "+f.tokens[name])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := map[string]any{}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

// decide prepares a decision as who, signs it with signer's key (the
// page's WebCrypto does this in the browser) and posts it.
func (f *actFixture) decide(t *testing.T, run, who, signer string, req map[string]any) (int, map[string]any, map[string]any) {
	t.Helper()
	code, prep := f.post(t, who, "/api/v1/runs/"+run+"/decisions/prepare", req)
	if code != http.StatusOK {
		return code, prep, nil
	}
	msg, err := base64.StdEncoding.DecodeString(prep["signing_bytes"].(string))
	if err != nil || string(msg) != prep["signing_text"] {
		t.Fatalf("signing bytes %q: %v", prep["signing_bytes"], err)
	}
	sig, err := f.keys[signer].Sign(msg)
	if err != nil {
		t.Fatal(err)
	}
	body := map[string]any{"signature": base64.StdEncoding.EncodeToString(sig), "decision": prep["decision"], "time": prep["time"], "nonce": prep["nonce"]}
	for k, v := range req {
		body[k] = v
	}
	code, out := f.post(t, who, "/api/v1/runs/"+run+"/decisions", body)
	return code, out, prep
}

func (f *actFixture) events(t *testing.T, run string) []eventbus.Envelope {
	t.Helper()
	h, err := f.admin.RunHistory(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A decision taken on the dashboard is the person's, signed by their own
// key in the browser: tina's approval, prepared with her token and signed
// with her key, is published by the reporter with her verifying signature
// (the deployer and audit verify check it again); a viewer's token cannot
// even prepare one; a signature by another key than the token's, an
// altered signature, a stale one and a cross-site post are refused and
// nothing is published; a refused approval is recorded as approval.refused
// with the CLI's sentence; a rejection, a cancel and a rollback request
// are published as the CLI publishes them; too late is 409.
func TestActFromTheDashboard(t *testing.T) {
	f := newActFixture(t)
	sha := f.submit(t, "R-APPROVE")
	approve := map[string]any{"action": "approve", "role": "technical_approval", "comment": "reviewed"}

	// Who am I: tina may approve and reject, vera nothing.
	for name, want := range map[string]string{"tina": "approve,reject", "rita": "cancel,rollback", "vera": ""} {
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/api/v1/me", nil)
		req.Header.Set("Authorization", "Bearer "+f.tokens[name])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var me api.Me
		_ = json.NewDecoder(resp.Body).Decode(&me)
		resp.Body.Close()
		if me.Identity != name || strings.Join(me.Actions, ",") != want || (want == "") != (me.Why != "") {
			t.Errorf("me of %s: %+v", name, me)
		}
	}

	// A viewer's token: refused before anything is signed.
	if code, out, _ := f.decide(t, "R-APPROVE", "vera", "vera", approve); code != http.StatusForbidden || !strings.Contains(out["error"].(string), "vera is a viewer: a viewer may not approve") {
		t.Errorf("viewer: %d %v", code, out)
	}
	// No token at all.
	if code, out := f.post(t, "", "/api/v1/runs/R-APPROVE/decisions/prepare", approve); code != http.StatusUnauthorized || !strings.Contains(out["error"].(string), "/login") {
		t.Errorf("anonymous: %d %v", code, out)
	}
	// Tina's token, mallory's key (or a stolen token without the key).
	if code, out, _ := f.decide(t, "R-APPROVE", "tina", "mallory", approve); code != http.StatusForbidden || !strings.Contains(out["error"].(string), "does not verify") {
		t.Errorf("another key: %d %v", code, out)
	}
	// An altered signature, a stale decision, a cross-site post.
	code, prep := f.post(t, "tina", "/api/v1/runs/R-APPROVE/decisions/prepare", approve)
	if code != http.StatusOK || prep["decision"] != "approval.granted" || prep["plan_sha256"] != sha || !strings.Contains(prep["signing_text"].(string), "run=R-APPROVE\n") {
		t.Fatalf("prepare: %d %v", code, prep)
	}
	msg, _ := base64.StdEncoding.DecodeString(prep["signing_bytes"].(string))
	sig, _ := f.keys["tina"].Sign(msg)
	sig[5] ^= 1
	body := map[string]any{"action": "approve", "role": "technical_approval", "signature": base64.StdEncoding.EncodeToString(sig), "decision": prep["decision"], "time": prep["time"], "nonce": prep["nonce"]}
	if code, out := f.post(t, "tina", "/api/v1/runs/R-APPROVE/decisions", body); code != http.StatusForbidden || !strings.Contains(out["error"].(string), "does not verify") {
		t.Errorf("altered signature: %d %v", code, out)
	}
	body["time"] = time.Now().Add(-time.Hour).UTC().Format(time.RFC3339Nano)
	if code, out := f.post(t, "tina", "/api/v1/runs/R-APPROVE/decisions", body); code != http.StatusConflict || !strings.Contains(out["error"].(string), "prepare and sign it again") {
		t.Errorf("stale: %d %v", code, out)
	}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/api/v1/runs/R-APPROVE/decisions/prepare", strings.NewReader(`{"action":"approve","role":"technical_approval"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Authorization", "Bearer "+f.tokens["tina"])
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site post: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, e := range f.events(t, "R-APPROVE") {
		if strings.HasPrefix(e.Event.GetType(), "approval.") {
			t.Fatalf("a refused attempt published %s", e.Event.GetType())
		}
	}

	// Tina, with her own key: published, by the reporter, signed by her.
	code, out, _ := f.decide(t, "R-APPROVE", "tina", "tina", approve)
	if code != http.StatusOK || out["decision"] != "approval.granted" || !strings.Contains(out["text"].(string), "tina approved R-APPROVE as technical_approval") ||
		!strings.Contains(out["text"].(string), "the deploy starts now") {
		t.Fatalf("tina's approval: %d %v", code, out)
	}
	kr, err := f.ids.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	reporterID, _ := kr.ByName("reporter")
	var granted *eventbus.Envelope
	for _, e := range f.events(t, "R-APPROVE") {
		if e.Event.GetType() == "approval.granted" {
			granted = &e
		}
	}
	if granted == nil {
		t.Fatal("no approval.granted on the stream")
	}
	if s, err := trust.Verify(kr, granted.Event, sha, "technical_approval"); err != nil || s.Identity.Name != "tina" {
		t.Errorf("the published approval's signature: %v %+v", err, s)
	}
	if pub, err := granted.Publisher(); err != nil || pub != reporterID.PublicKey {
		t.Errorf("published by %s (%v), want the reporter %s", pub, err, reporterID.PublicKey)
	}
	if a := granted.Event.GetApprovalGranted(); a.GetApprover() != "tina" || a.GetComment() != "reviewed" || granted.Event.GetActor() != "tina" {
		t.Errorf("approval %v", granted.Event)
	}
	// audit verify finds nothing wrong: the reporter may relay it, and it
	// carries tina's signature.
	auditor := trust.NewAuditor(kr)
	for _, e := range f.events(t, "R-APPROVE") {
		pub, perr := e.Publisher()
		if problems := auditor.Check(e.Event, pub, perr); len(problems) != 0 {
			t.Errorf("audit of %s: %v", e.Event.GetId(), problems)
		}
	}
	// Again: nothing new.
	if code, out, _ := f.decide(t, "R-APPROVE", "tina", "tina", approve); code != http.StatusConflict || !strings.Contains(out["error"].(string), "nothing new was published") {
		t.Errorf("repeat: %d %v", code, out)
	}

	// Mallory approving a role the run does not require: refused with the
	// CLI's sentence and recorded as approval.refused, signed by mallory.
	code, out, prep = f.decide(t, "R-APPROVE", "mallory", "mallory", map[string]any{"action": "approve", "role": "security_approval"})
	want := `refused: role "security_approval" is not one this run requires (it requires technical_approval) (recorded as approval.refused)`
	if code != http.StatusForbidden || out["error"] != want || prep["refusal"] != want || prep["decision"] != "approval.refused" {
		t.Errorf("refused approval: %d %v (prepared %v)", code, out, prep)
	}
	refused := 0
	for _, e := range f.events(t, "R-APPROVE") {
		if e.Event.GetType() == "approval.refused" && e.Event.GetSignature().GetKey() != "" {
			refused++
		}
	}
	if refused != 1 {
		t.Errorf("%d signed approval.refused on the stream, want 1", refused)
	}

	// A rejection (another run), a cancel and a rollback.
	f.submit(t, "R-REJECT")
	if code, out, _ := f.decide(t, "R-REJECT", "tina", "tina", map[string]any{"action": "reject", "role": "technical_approval"}); code != http.StatusBadRequest && code != http.StatusForbidden || !strings.Contains(out["error"].(string), "must say why") {
		t.Errorf("rejection without a reason: %d %v", code, out)
	}
	if code, out, _ := f.decide(t, "R-REJECT", "tina", "tina", map[string]any{"action": "reject", "role": "technical_approval", "reason": "not this week"}); code != http.StatusOK || out["decision"] != "approval.rejected" {
		t.Errorf("rejection: %d %v", code, out)
	}
	f.submit(t, "R-CANCEL")
	if code, out, _ := f.decide(t, "R-CANCEL", "rita", "rita", map[string]any{"action": "cancel", "reason": "wrong week"}); code != http.StatusOK || out["decision"] != "run.cancelled" || !strings.Contains(out["text"].(string), "cancelled by rita: wrong week") {
		t.Errorf("cancel: %d %v", code, out)
	}
	f.submit(t, "R-ROLLBACK")
	f.publish(t, eventbus.New("R-ROLLBACK", &runbookv1.Event_DeployStarted{DeployStarted: &runbookv1.DeployStarted{Steps: 1}}))
	if code, out, _ := f.decide(t, "R-ROLLBACK", "tina", "tina", approve); code != http.StatusConflict || !strings.Contains(out["error"].(string), "approvals are closed") {
		t.Errorf("approval after the deploy started: %d %v", code, out)
	}
	if code, out, _ := f.decide(t, "R-ROLLBACK", "rita", "rita", map[string]any{"action": "rollback", "reason": "errors"}); code != http.StatusOK || out["decision"] != "rollback.requested" {
		t.Errorf("rollback: %d %v", code, out)
	}
	for run, typ := range map[string]string{"R-REJECT": "approval.rejected", "R-CANCEL": "run.cancelled", "R-ROLLBACK": "rollback.requested"} {
		var ev *runbookv1.Event
		for _, e := range f.events(t, run) {
			if e.Event.GetType() == typ {
				ev = e.Event
			}
		}
		role := ""
		if typ == "approval.rejected" {
			role = "technical_approval"
		}
		if ev == nil {
			t.Errorf("%s: no %s", run, typ)
		} else if _, err := trust.Verify(kr, ev, sha, role); err != nil {
			t.Errorf("%s: %s: %v", run, typ, err)
		}
	}
	// The run ended: too late.
	if code, out, _ := f.decide(t, "R-CANCEL", "rita", "rita", map[string]any{"action": "rollback", "reason": "x"}); code != http.StatusConflict || !strings.Contains(out["error"].(string), "already ended CANCELLED: nothing to stop") {
		t.Errorf("rollback of a cancelled run: %d %v", code, out)
	}
	if code, out, _ := f.decide(t, "NO-SUCH-RUN", "rita", "rita", map[string]any{"action": "cancel"}); code != http.StatusNotFound {
		t.Errorf("unknown run: %d %v", code, out)
	}
}
