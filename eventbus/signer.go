package eventbus

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kis-core/runbook/domain/memo"
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

// msgSigner signs every message a bus publishes. It keeps the expanded
// Ed25519 key: an nkeys.KeyPair derives it from the seed on every Sign,
// which cost more than the signature itself.
type msgSigner struct {
	pub  string
	priv ed25519.PrivateKey
}

func newMsgSigner(kp nkeys.KeyPair) (*msgSigner, error) {
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("publisher key: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("publisher key %s: %w", pub, err)
	}
	_, raw, err := nkeys.DecodeSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("publisher key %s: %w", pub, err)
	}
	return &msgSigner{pub: pub, priv: ed25519.NewKeyFromSeed(raw)}, nil
}

// PublicKey and Sign make the expanded key a trust.KeySigner.
func (s *msgSigner) PublicKey() (string, error) { return s.pub, nil }

// Sign signs data with the expanded key.
func (s *msgSigner) Sign(data []byte) ([]byte, error) { return ed25519.Sign(s.priv, data), nil }

// sign puts the publisher headers on msg. What it signs counts as
// verified in this process: a consumer of the same process (runbook serve)
// does not verify its own signature again.
func (s *msgSigner) sign(msg *nats.Msg) {
	sig := ed25519.Sign(s.priv, msg.Data)
	msg.Header.Set(HeaderSigner, s.pub)
	msg.Header.Set(HeaderSignature, base64.RawStdEncoding.EncodeToString(sig))
	verified.Put(verifiedKey(s.pub, sig, msg.Data), struct{}{})
}

// publicKeys are the signers' decoded keys (a handful of identities).
var publicKeys sync.Map // string → nkeys.KeyPair

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
	var kp nkeys.KeyPair
	if k, ok := publicKeys.Load(pub); ok {
		kp = k.(nkeys.KeyPair)
	} else {
		if kp, err = nkeys.FromPublicKey(pub); err != nil {
			return pub, fmt.Errorf("%w: signer %q: %v", ErrBadPublisherSignature, pub, err)
		}
		publicKeys.Store(pub, kp)
	}
	key := verifiedKey(pub, sig, data)
	if _, ok := verified.Get(key); ok {
		return pub, nil
	}
	if err := kp.Verify(data, sig); err != nil {
		return pub, fmt.Errorf("%w (signer %s)", ErrBadPublisherSignature, pub)
	}
	verified.Put(key, struct{}{})
	return pub, nil
}

// verified holds the signatures this process has verified or made
// (verifiedKey): a message delivered to several consumers of one process
// (runbook serve), or published by it, is verified once or not at all.
var verified = memo.New[[32]byte, struct{}](16384)

// verifiedKey is the SHA-256 of a signature with its key and the bytes it
// is over: a hit needs all three. (A public nkey and an Ed25519 signature
// have fixed lengths: they need no separators.)
func verifiedKey(pub string, sig, data []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(pub))
	h.Write(sig)
	h.Write(data)
	var key [32]byte
	h.Sum(key[:0])
	return key
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
	return trust.Sign(b.msgSig, ev, planSHA, role, ev.Time.AsTime())
}

// SignerKey is the public key of the bus identity ("" without one).
func (b *Bus) SignerKey() string {
	if b.signer == nil {
		return ""
	}
	pub, _ := b.signer.PublicKey()
	return pub
}
