package eventbus

import (
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/trust"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Headers that record who published an event: the publishing identity's
// public nkey and its Ed25519 signature over the message's bytes as
// stored. The server's permissions decide who may publish a type; these
// headers keep the answer in the stream, where `runbook audit verify`
// checks it against the keyring and the type.
const (
	HeaderSigner    = "Runbook-Signer"
	HeaderSignature = "Runbook-Signature"
)

// ErrBadPublisherSignature: the Runbook-Signature header does not verify
// over the message with the Runbook-Signer key.
var ErrBadPublisherSignature = errors.New("publisher signature does not verify")

func signMsg(kp nkeys.KeyPair, msg *nats.Msg) error {
	pub, err := kp.PublicKey()
	if err != nil {
		return fmt.Errorf("publisher key: %w", err)
	}
	sig, err := kp.Sign(msg.Data)
	if err != nil {
		return fmt.Errorf("sign %s: %w", msg.Subject, err)
	}
	msg.Header.Set(HeaderSigner, pub)
	msg.Header.Set(HeaderSignature, base64.RawStdEncoding.EncodeToString(sig))
	return nil
}

// Publisher returns the public key that signed a stored message: "" when
// it carries no publisher signature, an error when the signature does not
// verify (the message was altered, or the header forged).
func Publisher(h nats.Header, data []byte) (string, error) {
	if h == nil || h.Get(HeaderSigner) == "" {
		return "", nil
	}
	pub := h.Get(HeaderSigner)
	sig, err := base64.RawStdEncoding.DecodeString(h.Get(HeaderSignature))
	if err != nil {
		return pub, fmt.Errorf("%w: %s is not base64", ErrBadPublisherSignature, HeaderSignature)
	}
	kp, err := nkeys.FromPublicKey(pub)
	if err != nil {
		return pub, fmt.Errorf("%w: signer %q: %v", ErrBadPublisherSignature, pub, err)
	}
	if err := kp.Verify(data, sig); err != nil {
		return pub, fmt.Errorf("%w (signer %s)", ErrBadPublisherSignature, pub)
	}
	return pub, nil
}

// Sign puts the bus identity's decision signature on ev (see trust.Sign):
// a person's decision over the run's plan planSHA, as role. Without an
// identity (--insecure-no-auth) it does nothing.
func (b *Bus) Sign(ev *runbookv1.Event, planSHA, role string) error {
	if b.signer == nil {
		return nil
	}
	if ev.Type == "" {
		ev.Type = TypeOf(ev)
	}
	if ev.Time == nil {
		ev.Time = timestamppb.New(b.now())
	}
	return trust.Sign(b.signer, ev, planSHA, role, ev.Time.AsTime())
}

// SignerKey is the public key of the bus identity ("" without one).
func (b *Bus) SignerKey() string {
	if b.signer == nil {
		return ""
	}
	pub, _ := b.signer.PublicKey()
	return pub
}
