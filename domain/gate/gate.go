// Package gate decides whether a run may start its deploy: every required
// role approved (with separation of duties), nothing rejected, the change
// window open. It is pure: the facts come from the run's plan and events,
// the time is passed in. The deployer is its authority (a raw NATS
// publisher can bypass the CLI); `runbook approve` and `runbook reject` use
// the same rules up front so a person gets a clear refusal at once.
//
// Rules for an approval (approval.granted):
//   - its role is one the run requires (plan.assessed approvals_required);
//   - it binds to the exact plan: its plan_sha256 is the sha256 of the
//     run's plan text (a changed plan is a new run with new approvals);
//   - the approver is not the requester (the submitter, or the plan's
//     requester.name);
//   - when the plan names the role's approver, it is that person;
//   - one person fills at most one role, and a role is filled once.
//
// Names compare case-insensitively with runs of spaces folded. A
// rejection (approval.rejected) is never refused by the gate: stopping a
// change is always safe, so any rejection before the deploy started ends
// the run REJECTED. The CLI still checks a rejection's role and plan up
// front to catch typos.
package gate

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kis-core/runbook/domain/plan"
	"github.com/kis-core/runbook/domain/trust"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Kind of a decision: the event type.
type Kind string

const (
	Grant  Kind = "approval.granted"
	Reject Kind = "approval.rejected"
)

// WindowRole is what RunWaiting.waiting_for holds while a run waits for
// its change window.
const WindowRole = "change_window"

// Decision is one approval.granted or approval.rejected.
type Decision struct {
	// ID is the event id: a repeated id is the same decision.
	ID         string
	Kind       Kind
	Role       string
	Approver   string // Approval.approver
	Actor      string // the event's actor (who published it)
	PlanSHA256 string
	Comment    string
	Reason     string
	Time       time.Time
	// Key is the public key that signed the decision (empty: unsigned);
	// separation of duties compares keys when there are.
	Key string
	// Nonce of the signature: a nonce seen before is a replay.
	Nonce string
	// Invalid says why the decision's signature is refused (Verified);
	// empty when it verified or signatures are not required.
	Invalid string
}

// person is who decided, as compared: the key when signed, else the name.
func (d Decision) person() string {
	if d.Key != "" {
		return "key:" + d.Key
	}
	return "name:" + Norm(d.Person())
}

// Person is who decided: the approver, or the actor when no approver is
// named.
func (d Decision) Person() string {
	if strings.TrimSpace(d.Approver) != "" {
		return strings.TrimSpace(d.Approver)
	}
	return strings.TrimSpace(d.Actor)
}

// Run is what the gate knows of one run.
type Run struct {
	// PlanSHA256 is the sha256 of the run's plan text.
	PlanSHA256 string
	// Requesters are the names of who asked for the change: the submitter
	// (change.requested actor) and the plan's requester.name.
	Requesters []string
	// RequesterKey is the key that signed the change request ("" unsigned).
	RequesterKey string
	// Required are the roles that must approve, in order.
	Required []string
	// Named maps a role to the approver the plan names for it.
	Named map[string]string
	// Emergency changes ignore PlannedStart.
	Emergency bool
	// PlannedStart opens the change window (zero: open).
	PlannedStart time.Time
	// WindowEnd closes it (zero: never): a run not started by then expires.
	WindowEnd time.Time
	// ApprovalTimeout (0: none) counts from ReadyAt.
	ApprovalTimeout time.Duration
	// ReadyAt is when pre-flight passed (zero: not yet).
	ReadyAt time.Time
}

// NewRun gathers a run's facts from its plan, the plan text as submitted,
// the submitter, the required roles and the time pre-flight passed.
func NewRun(p *plan.Plan, planText []byte, submitter string, required []string, readyAt time.Time) *Run {
	r := &Run{
		PlanSHA256: plan.Hash(planText),
		Required:   slices.Clone(required),
		Named:      map[string]string{},
		ReadyAt:    readyAt,
	}
	for _, n := range []string{submitter, p.Requester.Name} {
		if Norm(n) != "" {
			r.Requesters = append(r.Requesters, n)
		}
	}
	for role, a := range p.Approval {
		if Norm(a.Approver) != "" {
			r.Named[role] = a.Approver
		}
	}
	r.Emergency = strings.EqualFold(p.ChangeRequest.Type, "emergency")
	r.PlannedStart, _ = time.Parse(time.RFC3339, p.Timeline.PlannedStart)
	r.WindowEnd, _ = time.Parse(time.RFC3339, p.Timeline.WindowEnd)
	r.ApprovalTimeout = p.ApprovalTimeout.Duration
	return r
}

// Norm is a name as compared: lower case, spaces folded.
func Norm(name string) string {
	return strings.ToLower(strings.Join(strings.Fields(name), " "))
}

// SamePerson compares two names.
func SamePerson(a, b string) bool { return Norm(a) != "" && Norm(a) == Norm(b) }

var plainPart = regexp.MustCompile(`^[A-Za-z0-9._@ +-]{1,64}$`)

// NameKey turns a person's name into a part of an event id: the same
// person (names compare as Norm) always gets the same part, different
// people never do.
func NameKey(name string) string { return idPart(Norm(name)) }

// RoleKey turns a role into a part of an event id.
func RoleKey(role string) string { return idPart(role) }

// idPart is s when it is plain ASCII, else its plain characters and a
// short hash of it (plain parts never contain "~", so the two never meet).
func idPart(s string) string {
	if plainPart.MatchString(s) {
		return s
	}
	var b strings.Builder
	for _, c := range s {
		if c < 0x80 && plainPart.MatchString(string(c)) && b.Len() < 32 {
			b.WriteRune(c)
		}
	}
	sum := sha256.Sum256([]byte(s))
	return b.String() + "~" + hex.EncodeToString(sum[:4])
}

// Refusal is an approval the gate does not count, and why.
type Refusal struct {
	Decision Decision
	Reason   string
}

// Tally is a run's decisions sorted out.
type Tally struct {
	// Accepted maps each filled role to the approval that fills it.
	Accepted map[string]Decision
	// Refused are the approvals that break a rule, in order.
	Refused []Refusal
	// Rejected is the first rejection, nil when none.
	Rejected *Decision
}

func short(h string) string { return trust.Short(h) }

// check applies the rules shared by approvals and rejections.
func (r *Run) check(d Decision, verb string) error {
	person := d.Person()
	switch {
	case d.Invalid != "":
		return errors.New(d.Invalid)
	case strings.TrimSpace(d.Role) == "":
		return fmt.Errorf("an %s must name its role", verb)
	case person == "":
		return fmt.Errorf("an %s must name its approver", verb)
	case d.Key == "" && d.Approver != "" && d.Actor != "" && !SamePerson(d.Approver, d.Actor):
		return fmt.Errorf("the %s names %q as approver but was made by %q: one can only decide as oneself", verb, d.Approver, d.Actor)
	case len(r.Required) == 0:
		return fmt.Errorf("this run requires no approvals (role %q is not needed)", d.Role)
	case !slices.Contains(r.Required, d.Role):
		return fmt.Errorf("role %q is not one this run requires (it requires %s)", d.Role, strings.Join(r.Required, ", "))
	case d.PlanSHA256 == "":
		return fmt.Errorf("an approval binds to the exact plan: this %s names no plan sha256 (the run's plan is %s)", verb, short(r.PlanSHA256))
	case !strings.EqualFold(d.PlanSHA256, r.PlanSHA256):
		return fmt.Errorf("an approval binds to the exact plan: this %s is for plan sha256 %s, the run's plan is %s (a changed plan is a new run)", verb, short(d.PlanSHA256), short(r.PlanSHA256))
	}
	if d.Key != "" && d.Key == r.RequesterKey {
		if verb == "rejection" {
			return fmt.Errorf("%s signed this change request: the requester cannot reject their own change", person)
		}
		return fmt.Errorf("%s signed this change request: the requester cannot approve their own change", person)
	}
	for _, req := range r.Requesters {
		if SamePerson(person, req) {
			if verb == "rejection" {
				return fmt.Errorf("%s requested this change: the requester cannot reject their own change", person)
			}
			return fmt.Errorf("%s requested this change: the requester cannot approve their own change", person)
		}
	}
	if named, ok := r.Named[d.Role]; ok && !SamePerson(person, named) {
		return fmt.Errorf("the plan names %q as the approver of %s: %s cannot decide as %s", named, d.Role, person, d.Role)
	}
	return nil
}

// Check judges one approval against those already accepted (Tally's
// Accepted). nil means it counts; an approval that repeats one already
// accepted (same person, same role) is valid and changes nothing.
func (r *Run) Check(accepted map[string]Decision, d Decision) error {
	if err := r.check(d, "approval"); err != nil {
		return err
	}
	person := d.Person()
	if a, ok := accepted[d.Role]; ok && a.person() != d.person() {
		return fmt.Errorf("%s was already approved by %s: a role is filled once", d.Role, a.Person())
	}
	for _, role := range r.Required {
		if a, ok := accepted[role]; ok && role != d.Role && a.person() == d.person() {
			return fmt.Errorf("%s already approved as %s: one person cannot fill two roles of the same run", person, role)
		}
	}
	return nil
}

// CheckReject judges a rejection as the CLI does before publishing it: the
// role, the plan and the person must be right. The gate itself honours
// every rejection.
func (r *Run) CheckReject(d Decision) error {
	if strings.TrimSpace(d.Reason) == "" {
		return errors.New("a rejection must say why (--reason)")
	}
	return r.check(d, "rejection")
}

// Tally sorts decisions (in stream order) into accepted approvals,
// refusals and the first rejection. A repeated event id counts once.
func (r *Run) Tally(ds []Decision) Tally {
	t := Tally{Accepted: map[string]Decision{}}
	seen := map[string]bool{}
	nonces := map[string]string{} // nonce → the event id that used it first
	for _, d := range ds {
		if d.ID != "" {
			if seen[d.ID] {
				continue
			}
			seen[d.ID] = true
		}
		if d.Nonce != "" {
			if first, ok := nonces[d.Nonce]; ok {
				d.Invalid = fmt.Sprintf("replayed: its signature's nonce was already used by %s", first)
			} else {
				nonces[d.Nonce] = d.ID
			}
		}
		if d.Invalid != "" && d.Kind != Reject {
			// An approval counts only when its signature verifies. A
			// rejection stops the change whatever its signature: stopping
			// is always safe, the server let only an approver publish it,
			// and every reader's fold ends the run REJECTED on it (audit
			// verify names an unsigned one).
			t.Refused = append(t.Refused, Refusal{Decision: d, Reason: d.Invalid})
			continue
		}
		switch d.Kind {
		case Reject:
			if t.Rejected == nil {
				d := d
				t.Rejected = &d
			}
		case Grant:
			if err := r.Check(t.Accepted, d); err != nil {
				t.Refused = append(t.Refused, Refusal{Decision: d, Reason: err.Error()})
				continue
			}
			if _, filled := t.Accepted[d.Role]; !filled {
				t.Accepted[d.Role] = d
			}
		}
	}
	return t
}

// State of the gate.
type State string

const (
	Open            State = "open"
	WaitingApproval State = "waiting_approval"
	WaitingWindow   State = "waiting_window"
	Rejected        State = "rejected"
	Expired         State = "expired"
)

// Verdict is the gate at one moment.
type Verdict struct {
	State State
	// Missing are the required roles not yet approved, in order.
	Missing []string
	// Until is when the change window opens (zero when it is open).
	Until time.Time
	// Deadline is when the run expires if it still waits (zero: never).
	Deadline time.Time
	// Reason says it in one line.
	Reason string
	Tally  Tally
}

// WaitingFor is RunWaiting.waiting_for: the missing roles, or the window.
func (v Verdict) WaitingFor() []string {
	switch v.State {
	case WaitingApproval:
		return v.Missing
	case WaitingWindow:
		return []string{WindowRole}
	}
	return nil
}

// WaitKey names the waiting state for a deterministic event id: it
// changes only when what the run waits for changes.
func (v Verdict) WaitKey() string {
	switch v.State {
	case WaitingApproval:
		keys := make([]string, len(v.Missing))
		for i, m := range v.Missing {
			keys[i] = RoleKey(m)
		}
		return "approval/" + strings.Join(keys, "+")
	case WaitingWindow:
		return WindowRole
	}
	return ""
}

// Next is when the verdict can change with time alone (the window opens,
// a deadline passes); zero when only events can change it.
func (v Verdict) Next() time.Time {
	switch {
	case v.State != WaitingApproval && v.State != WaitingWindow:
		return time.Time{}
	case v.Until.IsZero():
		return v.Deadline
	case v.Deadline.IsZero() || v.Until.Before(v.Deadline):
		return v.Until
	}
	return v.Deadline
}

// ApprovalDeadline is when the approvals must be in (zero: no limit, or
// pre-flight has not passed yet).
func (r *Run) ApprovalDeadline() time.Time {
	if r.ApprovalTimeout <= 0 || r.ReadyAt.IsZero() {
		return time.Time{}
	}
	return r.ReadyAt.Add(r.ApprovalTimeout)
}

// WindowOpen reports whether the change window is open at now, and when it
// opens if not. A planned start in the past means open; an emergency
// change does not wait for it. The window's end is Evaluate's business.
func (r *Run) WindowOpen(now time.Time) (bool, time.Time) {
	if r.Emergency || r.PlannedStart.IsZero() || !now.Before(r.PlannedStart) {
		return true, time.Time{}
	}
	return false, r.PlannedStart
}

// TimeFormat is how times appear in reasons.
const TimeFormat = time.RFC3339

// Evaluate is the gate at now, given the run's decisions in stream order.
func (r *Run) Evaluate(ds []Decision, now time.Time) Verdict {
	v := Verdict{Tally: r.Tally(ds)}
	if d := v.Tally.Rejected; d != nil {
		v.State = Rejected
		v.Reason = fmt.Sprintf("rejected by %s as %s: %s", d.Person(), d.Role, orNone(d.Reason))
		return v
	}
	deadline := r.ApprovalDeadline()
	var late []string // roles not approved by the approval deadline
	for _, role := range r.Required {
		a, ok := v.Tally.Accepted[role]
		if !ok {
			v.Missing = append(v.Missing, role)
		}
		if !deadline.IsZero() && (!ok || a.Time.After(deadline)) {
			late = append(late, role)
		}
	}
	// Expiry: whichever limit passed first.
	approvalsExpired := !deadline.IsZero() && !now.Before(deadline) && len(late) > 0
	windowExpired := !r.WindowEnd.IsZero() && !now.Before(r.WindowEnd)
	switch {
	case approvalsExpired && (!windowExpired || !r.WindowEnd.Before(deadline)):
		v.State = Expired
		v.Reason = fmt.Sprintf("approvals timed out: no approval by %s within %s of pre-flight passing (by %s)", strings.Join(late, ", "), plan.FormatDuration(r.ApprovalTimeout), deadline.UTC().Format(TimeFormat))
		return v
	case windowExpired:
		v.State = Expired
		v.Reason = fmt.Sprintf("the change window ended at %s before the deploy could start", r.WindowEnd.UTC().Format(TimeFormat))
		if len(v.Missing) > 0 {
			v.Reason += " (still waiting for approval by " + strings.Join(v.Missing, ", ") + ")"
		}
		return v
	}
	open, until := r.WindowOpen(now)
	v.Until = until
	if len(v.Missing) > 0 {
		v.State = WaitingApproval
		v.Deadline = earliest(deadline, r.WindowEnd)
		v.Reason = "waiting for approval by " + strings.Join(v.Missing, ", ")
		if !open {
			v.Reason += "; the change window opens at " + until.UTC().Format(TimeFormat)
		}
	} else if !open {
		v.State = WaitingWindow
		v.Deadline = r.WindowEnd
		v.Reason = "waiting for the change window until " + until.UTC().Format(TimeFormat)
	} else {
		v.State = Open
		v.Reason = "every required approval is in and the change window is open"
		return v
	}
	if !v.Deadline.IsZero() {
		v.Reason += "; expires at " + v.Deadline.UTC().Format(TimeFormat)
	}
	return v
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

func orNone(s string) string {
	if strings.TrimSpace(s) == "" {
		return "no reason given"
	}
	return s
}

// DecisionOf reads an approval.granted or approval.rejected event; ok is
// false for any other event.
func DecisionOf(ev *runbookv1.Event) (Decision, bool) {
	var a *runbookv1.Approval
	var k Kind
	switch p := ev.GetPayload().(type) {
	case *runbookv1.Event_ApprovalGranted:
		a, k = p.ApprovalGranted, Grant
	case *runbookv1.Event_ApprovalRejected:
		a, k = p.ApprovalRejected, Reject
	default:
		return Decision{}, false
	}
	d := Decision{
		ID: ev.GetId(), Kind: k, Role: a.GetRole(), Approver: a.GetApprover(), Actor: ev.GetActor(),
		PlanSHA256: a.GetPlanSha256(), Comment: a.GetComment(), Reason: a.GetReason(),
	}
	if ev.GetTime() != nil {
		d.Time = ev.GetTime().AsTime()
	}
	if sig := ev.GetSignature(); sig != nil {
		d.Key, d.Nonce = sig.GetKey(), sig.GetNonce()
	}
	return d, true
}

// Verified reads a decision as DecisionOf does and, with a keyring,
// checks its signature (trust.Verify) over the run's plan planSHA and its
// role: a decision that is unsigned, signed by an unknown or revoked key,
// for another run, plan, role or decision, or whose approver is not the
// signer's identity, is Invalid and the gate refuses it. Without a keyring
// (--insecure-no-auth) signatures are not required.
func Verified(kr *trust.Keyring, ev *runbookv1.Event, planSHA string) (Decision, bool) {
	d, ok := DecisionOf(ev)
	if !ok || kr == nil {
		return d, ok
	}
	signed, err := trust.Verify(kr, ev, planSHA, d.Role)
	switch {
	case err != nil:
		d.Invalid = "refused signature: " + err.Error()
	case d.Approver != "" && !SamePerson(d.Approver, signed.Identity.Name):
		d.Invalid = fmt.Sprintf("the decision names %q as approver but was signed by %s: one can only decide as oneself", d.Approver, signed.Identity.Name)
	default:
		d.Approver = signed.Identity.Name
	}
	return d, true
}
