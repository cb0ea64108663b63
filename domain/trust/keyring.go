package trust

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
)

// Identity is one key the services know: a person or a service.
type Identity struct {
	// Name is unique in the keyring; a plan's approval section names
	// approvers by it. Lower case letters, digits, '-' and '_'.
	Name string `json:"name"`
	Role Role   `json:"role"`
	// PublicKey is the identity's public nkey ("U...", Ed25519): the key
	// NATS authenticates and the key its decisions are signed with.
	PublicKey string    `json:"public_key"`
	Created   time.Time `json:"created"`
	// Revoked: the key may no longer connect, and its signatures made
	// after this time are refused. Zero: valid.
	Revoked time.Time `json:"revoked,omitzero"`
	// TokenSHA256 is the sha256 (hex) of the identity's HTTP bearer token
	// for the read API and dashboard; empty: none.
	TokenSHA256 string `json:"token_sha256,omitempty"`
}

// Active reports whether the identity's key is valid at t.
func (i Identity) Active(t time.Time) bool { return i.Revoked.IsZero() || t.Before(i.Revoked) }

// Keyring is the set of identities the services trust.
type Keyring struct {
	Version    int        `json:"version"`
	Identities []Identity `json:"identities"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidName checks an identity name: it is part of NATS subjects (its
// inbox) and of event ids, so it is plain.
func ValidName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("identity name %q: use 1-63 lower-case letters, digits, '-' or '_', starting with a letter or digit (e.g. lead-architect)", name)
	}
	return nil
}

// ParseKeyring reads a keyring's JSON and checks every entry.
func ParseKeyring(data []byte) (*Keyring, error) {
	kr := &Keyring{}
	if err := json.Unmarshal(data, kr); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	seen := map[string]bool{}
	keys := map[string]bool{}
	for i, id := range kr.Identities {
		if err := ValidName(id.Name); err != nil {
			return nil, fmt.Errorf("keyring entry %d: %w", i, err)
		}
		if !id.Role.Valid() {
			return nil, fmt.Errorf("keyring entry %d (%s): unknown role %q", i, id.Name, id.Role)
		}
		if !nkeys.IsValidPublicUserKey(id.PublicKey) {
			return nil, fmt.Errorf("keyring entry %d (%s): public_key %q is not a user nkey (U...)", i, id.Name, id.PublicKey)
		}
		if seen[id.Name] {
			return nil, fmt.Errorf("keyring: name %q appears twice", id.Name)
		}
		if keys[id.PublicKey] {
			return nil, fmt.Errorf("keyring: key of %q appears twice", id.Name)
		}
		seen[id.Name], keys[id.PublicKey] = true, true
	}
	return kr, nil
}

// Marshal is the keyring's JSON, as stored.
func (kr *Keyring) Marshal() ([]byte, error) {
	kr.Version = 1
	b, err := json.MarshalIndent(kr, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ByName finds an identity by name.
func (kr *Keyring) ByName(name string) (Identity, bool) {
	if kr == nil {
		return Identity{}, false
	}
	i := slices.IndexFunc(kr.Identities, func(id Identity) bool { return id.Name == strings.ToLower(strings.TrimSpace(name)) })
	if i < 0 {
		return Identity{}, false
	}
	return kr.Identities[i], true
}

// ByKey finds an identity by its public key.
func (kr *Keyring) ByKey(key string) (Identity, bool) {
	if kr == nil {
		return Identity{}, false
	}
	i := slices.IndexFunc(kr.Identities, func(id Identity) bool { return id.PublicKey == key })
	if i < 0 {
		return Identity{}, false
	}
	return kr.Identities[i], true
}

// ByToken finds the active identity whose bearer token hashes to
// tokenSHA256.
func (kr *Keyring) ByToken(tokenSHA256 string, now time.Time) (Identity, bool) {
	if kr == nil || tokenSHA256 == "" {
		return Identity{}, false
	}
	for _, id := range kr.Identities {
		if id.TokenSHA256 != "" && id.TokenSHA256 == tokenSHA256 && id.Active(now) {
			return id, true
		}
	}
	return Identity{}, false
}

// Add puts a new identity into the keyring.
func (kr *Keyring) Add(id Identity) error {
	if err := ValidName(id.Name); err != nil {
		return err
	}
	if !id.Role.Valid() {
		return fmt.Errorf("identity %s: unknown role %q", id.Name, id.Role)
	}
	if _, ok := kr.ByName(id.Name); ok {
		return fmt.Errorf("identity %q already exists (revoke it first, or pick another name)", id.Name)
	}
	if _, ok := kr.ByKey(id.PublicKey); ok {
		return fmt.Errorf("identity %q: this key is already in the keyring", id.Name)
	}
	kr.Identities = append(kr.Identities, id)
	return nil
}

// Revoke marks name's key revoked at t.
func (kr *Keyring) Revoke(name string, t time.Time) error {
	for i := range kr.Identities {
		if kr.Identities[i].Name == name {
			if !kr.Identities[i].Revoked.IsZero() {
				return fmt.Errorf("identity %q was already revoked at %s", name, kr.Identities[i].Revoked.UTC().Format(time.RFC3339))
			}
			kr.Identities[i].Revoked = t.UTC()
			return nil
		}
	}
	return fmt.Errorf("no identity %q in the keyring", name)
}
