package eventbus_test

import (
	"encoding/base64"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/kis-core/runbook/eventbus"
)

// A signature verified once is remembered for its exact bytes only: the
// same signature over other bytes, or under another key, still fails.
func TestPublisherRemembersOnlyWhatItVerified(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	other, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	otherPub, _ := other.PublicKey()
	data := []byte("event bytes as stored")
	sig, err := kp.Sign(data)
	if err != nil {
		t.Fatal(err)
	}
	header := func(signer string) nats.Header {
		h := nats.Header{}
		h.Set(eventbus.HeaderSigner, signer)
		h.Set(eventbus.HeaderSignature, base64.RawStdEncoding.EncodeToString(sig))
		return h
	}
	for i := range 2 { // the second time from memory
		got, err := eventbus.Publisher(header(pub), data)
		if err != nil || got != pub {
			t.Fatalf("check %d: %q, %v; want %s", i+1, got, err, pub)
		}
	}
	if _, err := eventbus.Publisher(header(pub), []byte("event bytes as altered")); !errors.Is(err, eventbus.ErrBadPublisherSignature) {
		t.Fatalf("the verified signature over altered bytes: %v; want ErrBadPublisherSignature", err)
	}
	if _, err := eventbus.Publisher(header(otherPub), data); !errors.Is(err, eventbus.ErrBadPublisherSignature) {
		t.Fatalf("the verified signature claimed by another key: %v; want ErrBadPublisherSignature", err)
	}
}
