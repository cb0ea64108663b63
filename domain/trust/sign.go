package trust

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
	"google.golang.org/protobuf/types/known/timestamppb"

	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// ErrUnsigned: a decision without a signature.
var ErrUnsigned = errors.New("the decision is not signed")

// SigningBytes is what a person signs: the run, the exact plan, the
// decision, the role, the time and the nonce — each on its own line, so no
// field can run into the next.
func SigningBytes(runID string, s *runbookv1.Signature) []byte {
	var b strings.Builder
	b.WriteString("runbook-decision/v1\n")
	for _, kv := range [][2]string{
		{"run", runID}, {"plan", strings.ToLower(s.GetPlanSha256())}, {"decision", s.GetDecision()},
		{"role", s.GetRole()}, {"time", s.GetTime().AsTime().UTC().Format(time.RFC3339Nano)},
		{"nonce", s.GetNonce()}, {"key", s.GetKey()},
	} {
		b.WriteString(kv[0])
		b.WriteByte('=')
		b.WriteString(strings.ReplaceAll(kv[1], "\n", " "))
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// Sign puts kp's signature on ev: a decision of role over the plan with
// sha256 planSHA, at t. ev's run id and type must be set.
func Sign(kp KeySigner, ev *runbookv1.Event, planSHA, role string, t time.Time) error {
	pub, err := kp.PublicKey()
	if err != nil {
		return fmt.Errorf("sign %s: %w", ev.GetType(), err)
	}
	s, err := NewSignature(pub, ev, planSHA, role, t)
	if err != nil {
		return err
	}
	sig, err := kp.Sign(SigningBytes(ev.GetRunId(), s))
	if err != nil {
		return fmt.Errorf("sign %s: %w", ev.GetType(), err)
	}
	s.Sig = sig
	ev.Signature = s
	return nil
}

// KeySigner is what Sign needs of a key: an nkeys.KeyPair, or a signer
// that keeps the key expanded (signing often).
type KeySigner interface {
	PublicKey() (string, error)
	Sign(data []byte) ([]byte, error)
}

// NewSignature is the signature key pub would put on ev — a decision of
// role over the plan with sha256 planSHA, at t, with a fresh nonce —
// without its Sig: what a signer elsewhere (the dashboard's page, which
// holds the key) signs, as SigningBytes(ev's run id, the result).
func NewSignature(pub string, ev *runbookv1.Event, planSHA, role string, t time.Time) (*runbookv1.Signature, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("sign %s: nonce: %w", ev.GetType(), err)
	}
	return &runbookv1.Signature{
		Key: pub, PlanSha256: strings.ToLower(planSHA), Decision: ev.GetType(), Role: role,
		Time: timestamppb.New(t.UTC()), Nonce: hex.EncodeToString(nonce),
	}, nil
}

// Signed is a verified decision: who signed it.
type Signed struct {
	Identity Identity
	Nonce    string
	Time     time.Time
}

// Verify checks a decision's signature: present; made by a key in the
// keyring, not revoked when it signed, of a person (not a service) whose
// role may make this decision;
// over this event's run and type, and over plan planSHA. role, when not
// empty, is the approval role the event claims and must be the one signed.
// The error says which of these failed; the nonce's uniqueness is the
// caller's to check (it needs the run's history).
func Verify(kr *Keyring, ev *runbookv1.Event, planSHA, role string) (Signed, error) {
	s := ev.GetSignature()
	if s == nil || len(s.GetSig()) == 0 {
		return Signed{}, fmt.Errorf("%w: %s must be signed by its actor's key (use runbook with --creds)", ErrUnsigned, ev.GetType())
	}
	id, ok := kr.ByKey(s.GetKey())
	if !ok {
		return Signed{}, fmt.Errorf("signed by unknown key %s: not in the keyring", Short(s.GetKey()))
	}
	pub, err := nkeys.FromPublicKey(s.GetKey())
	if err != nil {
		return Signed{}, fmt.Errorf("signature key %s: %w", Short(s.GetKey()), err)
	}
	if err := pub.Verify(SigningBytes(ev.GetRunId(), s), s.GetSig()); err != nil {
		return Signed{}, fmt.Errorf("the signature of %s (%s) does not verify: the event was altered or forged", id.Name, Short(s.GetKey()))
	}
	signedAt := s.GetTime().AsTime()
	switch {
	case s.GetDecision() != ev.GetType():
		return Signed{}, fmt.Errorf("signed by %s for %s, not %s: a signature cannot be reused for another decision", id.Name, s.GetDecision(), ev.GetType())
	case !strings.EqualFold(s.GetPlanSha256(), planSHA):
		return Signed{}, fmt.Errorf("signed by %s for plan sha256 %s, but the run's plan is %s: a signature binds to the exact plan", id.Name, Short(s.GetPlanSha256()), Short(planSHA))
	case role != "" && s.GetRole() != role:
		return Signed{}, fmt.Errorf("signed by %s as %s, but the event claims role %s", id.Name, s.GetRole(), role)
	case !id.Active(signedAt):
		return Signed{}, fmt.Errorf("signed by %s, whose key was revoked at %s", id.Name, id.Revoked.UTC().Format(time.RFC3339))
	case id.Role.Service():
		// A service relays people's decisions; it never makes one.
		return Signed{}, fmt.Errorf("signed by %s, a %s service: a decision is signed by the person who makes it", id.Name, id.Role)
	case !MayPublish(id.Role, ev.GetType()):
		return Signed{}, fmt.Errorf("signed by %s, a %s: a %s may not make %s decisions", id.Name, id.Role, id.Role, ev.GetType())
	}
	return Signed{Identity: id, Nonce: s.GetNonce(), Time: signedAt}, nil
}

// Short is a key or hash cut for a message: its first 12 characters, or
// "(none)".
func Short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	if h == "" {
		return "(none)"
	}
	return h
}
