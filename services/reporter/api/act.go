package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/decision"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Acting from the dashboard (docs/security.md, "Acting from the
// dashboard"): a person approves, rejects, cancels or rolls back a run in
// two requests, each authenticated by their bearer token (header or
// cookie):
//
//	POST /api/v1/runs/{id}/decisions/prepare  {action, role, comment, reason}
//	POST /api/v1/runs/{id}/decisions          {action, role, comment, reason, decision, time, nonce, signature}
//
// prepare checks the decision exactly as the CLI does (package decision:
// too late, the gate's separation of duties) and answers the event's
// signing bytes (trust.SigningBytes) for the token's identity's key, with
// the time and nonce it chose. The page signs them in the browser with
// the identity's own Ed25519 key (its nkey seed, loaded by the person and
// kept in the page's memory: never sent) and posts the signature with the
// same fields. The server builds the same event again, checks the
// signature against the keyring (trust.Verify: the key is the token's
// identity's, active, of a role that may make this decision, over this run,
// plan, decision, role, time and nonce) and publishes it. The deployer and
// audit verify check that signature again: the reporter only relays it.

// MaxDecisionAge is how old a prepared decision may be when its signature
// is posted.
const MaxDecisionAge = 5 * time.Minute

// actRequest is the body of both POSTs; Decision, Time, Nonce and
// Signature only of the second.
type actRequest struct {
	Action  string `json:"action"`
	Role    string `json:"role,omitempty"`
	Comment string `json:"comment,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Decision is the event type prepare answered (the one signed).
	Decision string `json:"decision,omitempty"`
	// Time and Nonce are prepare's, as signed.
	Time  time.Time `json:"time,omitzero"`
	Nonce string    `json:"nonce,omitempty"`
	// Signature is the Ed25519 signature of the signing bytes, base64.
	Signature string `json:"signature,omitempty"`
}

// Prepared is the answer of prepare: what to sign.
type Prepared struct {
	Action string `json:"action"`
	// Decision is the event type that will be published: the decision, or
	// approval.refused when the gate refuses it (Refusal says why; the
	// CLI records it the same way).
	Decision   string    `json:"decision"`
	Refusal    string    `json:"refusal,omitempty"`
	Identity   string    `json:"identity"`
	Key        string    `json:"key"`
	PlanSHA256 string    `json:"plan_sha256"`
	Role       string    `json:"role"`
	Time       time.Time `json:"time"`
	Nonce      string    `json:"nonce"`
	// SigningBytes (base64) are what the key signs; SigningText the same,
	// as text, for the person to read.
	SigningBytes string `json:"signing_bytes"`
	SigningText  string `json:"signing_text"`
}

// Acted is the answer of a posted decision.
type Acted struct {
	Decision string `json:"decision"`
	EventID  string `json:"event_id,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`
	// Text says what happened, as the CLI says it.
	Text string `json:"text"`
}

// Me is GET /api/v1/me: who the request's token names and what the
// dashboard lets them do.
type Me struct {
	Identity  string   `json:"identity,omitempty"`
	Role      string   `json:"role,omitempty"`
	PublicKey string   `json:"public_key,omitempty"`
	Actions   []string `json:"actions"`
	// Why says why no action is offered ("" when some are).
	Why string `json:"why,omitempty"`
}

// actionTypes are the event types an action may publish: a person's role
// must be allowed each of them (trust.MayPublish).
var actionTypes = map[decision.Action][]string{
	decision.Approve:  {"approval.granted"},
	decision.Reject:   {"approval.rejected"},
	decision.Cancel:   {"run.cancelled", "rollback.requested"},
	decision.Rollback: {"rollback.requested"},
}

// actor is the person a request acts as: the identity of its token.
func (a *API) actor(r *http.Request) (trust.Identity, *trust.Keyring, error) {
	name, ok := viewer(r.Context())
	if !ok {
		return trust.Identity{}, nil, &actError{http.StatusUnauthorized, "acting on a run needs your identity: open /login with your token (runbook identity create gives one)"}
	}
	if a.o.Keyring == nil {
		return trust.Identity{}, nil, &actError{http.StatusForbidden, "this server has no keyring (it runs with --insecure-no-auth): decisions cannot be signed, act with the CLI"}
	}
	kr, err := a.o.Keyring.Keyring()
	if err != nil {
		return trust.Identity{}, nil, fmt.Errorf("keyring: %w", err)
	}
	id, ok := kr.ByName(name)
	if !ok || !id.Active(time.Now()) {
		return trust.Identity{}, nil, &actError{http.StatusForbidden, fmt.Sprintf("identity %s is not an active identity of the keyring", name)}
	}
	return id, kr, nil
}

// mayAct lists the actions role may take.
func mayAct(role trust.Role) []string {
	out := []string{}
	if role.Service() {
		return out // a service relays decisions, it makes none
	}
	for _, act := range decision.Actions {
		if slices.ContainsFunc(actionTypes[act], func(typ string) bool { return trust.MayPublish(role, typ) }) {
			out = append(out, string(act))
		}
	}
	return out
}

func (a *API) me(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	id, _, err := a.actor(r)
	if err != nil {
		var ae *actError
		if !errors.As(err, &ae) {
			a.internal(w, r, err)
			return
		}
		name, _ := viewer(r.Context())
		writeJSON(w, http.StatusOK, Me{Identity: name, Actions: []string{}, Why: ae.msg})
		return
	}
	me := Me{Identity: id.Name, Role: string(id.Role), PublicKey: id.PublicKey, Actions: mayAct(id.Role)}
	if len(me.Actions) == 0 {
		me.Why = fmt.Sprintf("%s is a %s: a %s may not approve, reject, cancel or roll back", id.Name, id.Role, id.Role)
	}
	writeJSON(w, http.StatusOK, me)
}

// actError is a refusal with its HTTP status.
type actError struct {
	code int
	msg  string
}

func (e *actError) Error() string { return e.msg }

// readAct checks a decision POST (same origin, JSON) and reads its body.
func readAct(w http.ResponseWriter, r *http.Request) (actRequest, error) {
	var req actRequest
	// A form on another site cannot send JSON without a CORS preflight,
	// and the token cookie is SameSite=Strict; an Origin, when sent, must
	// be this server's.
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return req, &actError{http.StatusUnsupportedMediaType, fmt.Sprintf("a decision is posted as JSON (Content-Type: application/json), not %q", ct)}
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return req, &actError{http.StatusForbidden, fmt.Sprintf("Origin %q is not this server (%s): decisions are taken from its own dashboard only", o, r.Host)}
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, &actError{http.StatusBadRequest, "cannot read the decision: " + err.Error() + ` (want {"action": "approve|reject|cancel|rollback", "role": ..., "comment": ..., "reason": ...})`}
	}
	return req, nil
}

// outcome checks and builds the decision of req as identity id, at t.
func (a *API) outcome(r *http.Request, run string, id trust.Identity, kr *trust.Keyring, req actRequest, t time.Time) (*decision.Outcome, *decision.Facts, error) {
	act, err := decision.ParseAction(req.Action)
	if err != nil {
		return nil, nil, &actError{http.StatusBadRequest, "action: " + err.Error()}
	}
	if !slices.Contains(mayAct(id.Role), string(act)) {
		return nil, nil, &actError{http.StatusForbidden, fmt.Sprintf("%s is a %s: a %s may not %s a run", id.Name, id.Role, id.Role, act)}
	}
	f, err := decision.Load(r.Context(), a.o.Bus, run, kr)
	if errors.Is(err, decision.ErrNoRun) {
		return nil, nil, &notFound{"no run " + run}
	}
	if err != nil {
		return nil, nil, err
	}
	o, err := f.Decide(decision.Request{Action: act, Role: req.Role, As: id.Name, Comment: req.Comment, Reason: req.Reason, Key: id.PublicKey, Time: t})
	var late *decision.TooLate
	switch {
	case errors.As(err, &late):
		return nil, nil, &actError{http.StatusConflict, err.Error()}
	case err != nil:
		return nil, nil, &actError{http.StatusBadRequest, err.Error()}
	}
	return o, f, nil
}

// actFail answers a decision's error.
func (a *API) actFail(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("Cache-Control", "no-store")
	var ae *actError
	if errors.As(err, &ae) {
		a.log.Info("dashboard decision refused", "path", r.URL.Path, "why", ae.msg)
		writeError(w, ae.code, apiError{Error: ae.msg})
		return
	}
	a.fail(w, r, err)
}

// actInput is what prepare and act both read: the run (from the path), who
// acts (the request's token) and what they ask; false when it was refused
// (the answer is written).
func (a *API) actInput(w http.ResponseWriter, r *http.Request) (run string, id trust.Identity, kr *trust.Keyring, req actRequest, ok bool) {
	run = r.PathValue("id")
	if err := eventbus.ValidateRunID(run); err != nil {
		a.actFail(w, r, &actError{http.StatusBadRequest, err.Error()})
		return "", id, nil, req, false
	}
	id, kr, err := a.actor(r)
	if err != nil {
		a.actFail(w, r, err)
		return "", id, nil, req, false
	}
	if req, err = readAct(w, r); err != nil {
		a.actFail(w, r, err)
		return "", id, nil, req, false
	}
	return run, id, kr, req, true
}

// prepare answers what to sign for a decision.
func (a *API) prepare(w http.ResponseWriter, r *http.Request) {
	run, id, kr, req, ok := a.actInput(w, r)
	if !ok {
		return
	}
	o, _, err := a.outcome(r, run, id, kr, req, time.Now().UTC().Truncate(time.Millisecond))
	if err != nil {
		a.actFail(w, r, err)
		return
	}
	if o.Event == nil { // the same decision was already taken (or refused)
		code := http.StatusConflict
		if o.Refused != nil {
			code = http.StatusForbidden
		}
		a.actFail(w, r, &actError{code, o.Text})
		return
	}
	sig, err := trust.NewSignature(id.PublicKey, o.Event, o.SignPlan, o.SignRole, o.Event.GetTime().AsTime())
	if err != nil {
		a.internal(w, r, err)
		return
	}
	b := trust.SigningBytes(run, sig)
	p := Prepared{
		Action: req.Action, Decision: o.Event.GetType(), Identity: id.Name, Key: id.PublicKey,
		PlanSHA256: sig.GetPlanSha256(), Role: sig.GetRole(), Time: sig.GetTime().AsTime(), Nonce: sig.GetNonce(),
		SigningBytes: base64.StdEncoding.EncodeToString(b), SigningText: string(b),
	}
	if o.Refused != nil {
		p.Refusal = o.Text
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, p)
}

// act checks a signed decision and publishes it.
func (a *API) act(w http.ResponseWriter, r *http.Request) {
	run, id, kr, req, ok := a.actInput(w, r)
	if !ok {
		return
	}
	sig, err := base64.StdEncoding.DecodeString(req.Signature)
	switch {
	case err != nil || len(sig) == 0:
		a.actFail(w, r, &actError{http.StatusBadRequest, "signature: want the base64 Ed25519 signature of the prepared signing bytes"})
		return
	case req.Time.IsZero() || req.Nonce == "" || req.Decision == "":
		a.actFail(w, r, &actError{http.StatusBadRequest, "decision, time and nonce: send them as prepare answered them"})
		return
	case time.Since(req.Time) > MaxDecisionAge || time.Until(req.Time) > time.Minute:
		a.actFail(w, r, &actError{http.StatusConflict, fmt.Sprintf("the decision was prepared at %s, more than %s ago: prepare and sign it again", req.Time.UTC().Format(time.RFC3339), MaxDecisionAge)})
		return
	}
	o, f, err := a.outcome(r, run, id, kr, req, req.Time)
	if err != nil {
		a.actFail(w, r, err)
		return
	}
	if o.Event == nil {
		code := http.StatusConflict
		if o.Refused != nil {
			code = http.StatusForbidden
		}
		a.actFail(w, r, &actError{code, o.Text})
		return
	}
	ev := o.Event
	if ev.GetType() != req.Decision {
		a.actFail(w, r, &actError{http.StatusConflict, fmt.Sprintf("the run changed since you signed %s: it would now be %s (%s); sign again", req.Decision, ev.GetType(), o.Text)})
		return
	}
	ev.Signature = &runbookv1.Signature{
		Key: id.PublicKey, PlanSha256: strings.ToLower(o.SignPlan), Decision: ev.GetType(), Role: o.SignRole,
		Time: timestamppb.New(req.Time), Nonce: req.Nonce, Sig: sig,
	}
	approvalRole := ""
	if strings.HasPrefix(ev.GetType(), "approval.") {
		approvalRole = o.SignRole
	}
	signed, err := trust.Verify(kr, ev, f.State.PlanSHA256, approvalRole)
	if err != nil {
		a.actFail(w, r, &actError{http.StatusForbidden, "signature refused: " + err.Error()})
		return
	}
	if signed.Identity.Name != id.Name { // Verify found the key; it is the token's
		a.actFail(w, r, &actError{http.StatusForbidden, fmt.Sprintf("signed by %s, but your token is %s's: sign with your own key", signed.Identity.Name, id.Name)})
		return
	}
	var seq uint64
	if o.Once {
		seq, err = a.o.Bus.PublishOnce(r.Context(), ev)
		if errors.Is(err, eventbus.ErrAlreadyPublished) {
			err = nil
		}
	} else {
		seq, err = a.o.Bus.Publish(r.Context(), ev)
	}
	if err != nil {
		a.internal(w, r, fmt.Errorf("publish %s of run %s for %s: %w", ev.GetType(), run, id.Name, err))
		return
	}
	a.log.Info("dashboard decision", "run_id", run, "event", ev.GetType(), "identity", id.Name, "seq", seq)
	w.Header().Set("Cache-Control", "no-store")
	if o.Refused != nil {
		// Recorded, as the CLI records it: the answer is the refusal.
		writeJSON(w, http.StatusForbidden, apiError{Error: o.Text})
		return
	}
	writeJSON(w, http.StatusOK, Acted{Decision: ev.GetType(), EventID: ev.GetId(), Seq: seq, Text: strings.TrimSuffix(o.Text+"; "+o.Next(f), "; ")})
}
