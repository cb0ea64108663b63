package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/kis-core/runbook/domain/trust"
)

// KeyringName is the keyring's file name in an identity directory.
const KeyringName = "keyring.json"

// Store is a directory of identities: keyring.json (public keys, roles,
// token hashes: readable by the services) and one <name>.nk seed file per
// identity made here (0600: the secret that proves the identity).
type Store struct {
	Dir string
}

// KeyringPath is the keyring's path.
func (s Store) KeyringPath() string { return filepath.Join(s.Dir, KeyringName) }

// SeedPath is where the seed of identity name is kept.
func (s Store) SeedPath(name string) string { return filepath.Join(s.Dir, name+".nk") }

// Keyring reads the keyring; a missing file is an empty keyring.
func (s Store) Keyring() (*trust.Keyring, error) {
	kr, err := LoadKeyring(s.KeyringPath())
	if errors.Is(err, os.ErrNotExist) {
		return &trust.Keyring{}, nil
	}
	return kr, err
}

// LoadKeyring reads a keyring file.
func LoadKeyring(path string) (*trust.Keyring, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read keyring: %w", err)
	}
	kr, err := trust.ParseKeyring(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return kr, nil
}

// Created is a new identity and where its secrets went.
type Created struct {
	Identity trust.Identity
	// SeedPath is the seed file: --creds for runbook, --nkey for the nats CLI.
	SeedPath string
	// Token is the HTTP bearer token for the read API and dashboard, shown
	// once (the keyring keeps its sha256).
	Token string
}

// Create makes an identity: a new Ed25519 user nkey whose seed is written
// to seedPath ("" for the store's <name>.nk; never overwritten), its public
// key added to the keyring.
func (s Store) Create(name string, role trust.Role, seedPath string) (Created, error) {
	if err := trust.ValidName(name); err != nil {
		return Created{}, err
	}
	if !role.Valid() {
		return Created{}, fmt.Errorf("identity %s: unknown role %q", name, role)
	}
	if seedPath == "" {
		seedPath = s.SeedPath(name)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		return Created{}, fmt.Errorf("create key for %s: %w", name, err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	token, tokenHash, err := newToken(name)
	if err != nil {
		return Created{}, err
	}
	id := trust.Identity{Name: name, Role: role, PublicKey: pub, Created: time.Now().UTC(), TokenSHA256: tokenHash}
	err = s.update(func(kr *trust.Keyring) error {
		if err := kr.Add(id); err != nil {
			return err
		}
		return writeSecret(seedPath, seed)
	})
	if err != nil {
		return Created{}, err
	}
	return Created{Identity: id, SeedPath: seedPath, Token: token}, nil
}

// Revoke revokes name's key: it can no longer connect (the server reloads
// the keyring) and its later signatures are refused.
func (s Store) Revoke(name string) error {
	return s.update(func(kr *trust.Keyring) error { return kr.Revoke(name, time.Now()) })
}

// Ensure makes the identities that are missing (the services' and admin's
// on first start) and returns every one of them.
func (s Store) Ensure(names map[string]trust.Role) error {
	kr, err := s.Keyring()
	if err != nil {
		return err
	}
	for name, role := range names {
		if _, ok := kr.ByName(name); ok {
			if _, err := os.Stat(s.SeedPath(name)); err != nil {
				return fmt.Errorf("identity %s is in %s but its seed %s is missing: restore it, or revoke the identity and remove the keyring entry", name, s.KeyringPath(), s.SeedPath(name))
			}
			continue
		}
		if _, err := s.Create(name, role, ""); err != nil {
			return err
		}
	}
	return nil
}

// Admin is the name of the admin identity `runbook serve` makes.
const Admin = "admin"

// ServeIdentities are the identities `runbook serve` makes on first start:
// admin and one per service, each named after its role.
func ServeIdentities() map[string]trust.Role {
	m := map[string]trust.Role{Admin: trust.Admin}
	for _, r := range trust.ServiceRoles {
		m[string(r)] = r
	}
	return m
}

var storeMu sync.Mutex // one writer per process; flock across processes

// update changes the keyring under an exclusive lock and writes it back
// atomically (temp file, fsync, rename).
func (s Store) update(fn func(*trust.Keyring) error) error {
	storeMu.Lock()
	defer storeMu.Unlock()
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("identity dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(s.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock keyring: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock keyring: %w", err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	kr, err := s.Keyring()
	if err != nil {
		return err
	}
	if err := fn(kr); err != nil {
		return err
	}
	data, err := kr.Marshal()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.Dir, ".keyring-*")
	if err != nil {
		return fmt.Errorf("write keyring: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write keyring: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write keyring: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write keyring: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write keyring: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.KeyringPath()); err != nil {
		return fmt.Errorf("write keyring: %w", err)
	}
	return nil
}

func writeSecret(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("seed dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write seed (never overwritten): %w", err)
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write seed %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write seed %s: %w", path, err)
	}
	return f.Close()
}

func newToken(name string) (token, sum string, err error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("token for %s: %w", name, err)
	}
	token = "rbk_" + name + "_" + base64.RawURLEncoding.EncodeToString(b)
	return token, TokenSHA256(token), nil
}

// TokenSHA256 is how the keyring stores a bearer token.
func TokenSHA256(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// LoadSeed reads a seed file (a bare "SU..." seed or a decorated creds
// file) and refuses one that others may read.
func LoadSeed(path string) (nkeys.KeyPair, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("creds %s: %w", path, err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("creds %s: mode %04o lets others read the secret key: chmod 600 %s", path, st.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("creds %s: %w", path, err)
	}
	kp, err := nkeys.ParseDecoratedNKey(data)
	if err != nil {
		kp, err = nkeys.FromSeed([]byte(strings.TrimSpace(string(data))))
	}
	if err != nil {
		return nil, fmt.Errorf("creds %s: not an nkey seed file: %w", path, err)
	}
	if _, err := kp.Seed(); err != nil {
		return nil, fmt.Errorf("creds %s: holds a public key, not a seed", path)
	}
	pub, _ := kp.PublicKey()
	if !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("creds %s: not a user seed (SU...)", path)
	}
	return kp, nil
}

// Identity is a key pair ready to connect and sign.
type Identity struct {
	KP nkeys.KeyPair
	// Path is the seed file it came from.
	Path string
}

// PublicKey of the identity.
func (i *Identity) PublicKey() string {
	pub, _ := i.KP.PublicKey()
	return pub
}

// Open loads a seed file.
func Open(seedPath string) (*Identity, error) {
	kp, err := LoadSeed(seedPath)
	if err != nil {
		return nil, err
	}
	return &Identity{KP: kp, Path: seedPath}, nil
}

// Options authenticate a NATS connection as the identity: its nkey
// (the server sends a nonce, the key signs it) and its own inbox prefix.
func (i *Identity) Options() []nats.Option {
	return []nats.Option{
		nats.Nkey(i.PublicKey(), i.KP.Sign),
		nats.CustomInboxPrefix(InboxPrefix(i.PublicKey())),
	}
}

// KeyringFile is a keyring read from a file and read again whenever the
// file changes (`runbook identity create` or `revoke` while services run).
type KeyringFile struct {
	path    string
	mu      sync.Mutex
	mod     time.Time
	size    int64
	kr      *trust.Keyring
	checked time.Time
}

// KeyringRecheck is how old RecentKeyring's look at the file may be.
const KeyringRecheck = 200 * time.Millisecond

// NewKeyringFile reads path on first use.
func NewKeyringFile(path string) *KeyringFile { return &KeyringFile{path: path} }

// Path of the keyring file.
func (k *KeyringFile) Path() string { return k.path }

// Keyring is the keyring as the file holds it now.
func (k *KeyringFile) Keyring() (*trust.Keyring, error) { return k.keyring(0) }

// RecentKeyring is the keyring as the file held it at most KeyringRecheck
// ago: what a consumer checks every message's publisher against without
// looking at the file each time (a key it does not know is looked up
// again with Keyring; a revoked identity's connection is closed by the
// server).
func (k *KeyringFile) RecentKeyring() (*trust.Keyring, error) { return k.keyring(KeyringRecheck) }

func (k *KeyringFile) keyring(maxAge time.Duration) (*trust.Keyring, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	t := time.Now()
	if k.kr != nil && t.Sub(k.checked) < maxAge {
		return k.kr, nil
	}
	st, err := os.Stat(k.path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if k.kr != nil && st.ModTime().Equal(k.mod) && st.Size() == k.size {
		k.checked = t
		return k.kr, nil
	}
	kr, err := LoadKeyring(k.path)
	if err != nil {
		return nil, err
	}
	k.kr, k.mod, k.size, k.checked = kr, st.ModTime(), st.Size(), t
	return kr, nil
}

// Authorize checks an HTTP bearer token against the keyring: the active
// identity whose token it is (the read API's api.Options.Authorize).
func (k *KeyringFile) Authorize(token string) (string, bool) {
	kr, err := k.Keyring()
	if err != nil {
		return "", false
	}
	id, ok := kr.ByToken(TokenSHA256(token), time.Now())
	return id.Name, ok
}
