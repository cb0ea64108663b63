package auth_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/kis-core/runbook/domain/trust"
	"github.com/kis-core/runbook/eventbus/auth"
)

// natsConfKeyring is a keyring with every role, and a revoked requester.
func natsConfKeyring(t *testing.T) *trust.Keyring {
	t.Helper()
	store := auth.Store{Dir: t.TempDir()}
	if err := store.Ensure(auth.ServeIdentities()); err != nil {
		t.Fatal(err)
	}
	for name, role := range map[string]trust.Role{"oncall": trust.Requester, "lead": trust.Approver, "watcher": trust.Viewer, "former": trust.Requester} {
		if _, err := store.Create(name, role, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Revoke("former"); err != nil {
		t.Fatal(err)
	}
	kr, err := store.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// The fragment, read by nats-server's own parser, gives exactly the users
// and permissions of auth.Users: one home for the permissions.
func TestNATSConfigParsesToUsers(t *testing.T) {
	kr := natsConfKeyring(t)
	var frag bytes.Buffer
	if err := auth.NATSConfig(&frag, kr, "test keyring"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), frag.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	main := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(main, []byte("port: -1\ninclude ./auth.conf\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(main)
	if err != nil {
		t.Fatalf("nats-server does not read the fragment: %v\n%s", err, frag.String())
	}
	want := auth.Users(kr)
	if len(want) != len(kr.Identities)-1 {
		t.Fatalf("auth.Users: %d users of %d identities (one revoked)", len(want), len(kr.Identities))
	}
	if !reflect.DeepEqual(opts.Nkeys, want) {
		for i := range max(len(opts.Nkeys), len(want)) {
			var got, exp any
			if i < len(opts.Nkeys) {
				got = *opts.Nkeys[i]
			}
			if i < len(want) {
				exp = *want[i]
			}
			if !reflect.DeepEqual(got, exp) {
				t.Errorf("user %d:\n got  %+v\n want %+v", i, got, exp)
			}
		}
		t.Fatal("the parsed users differ from auth.Users")
	}
	former, _ := kr.ByName("former")
	if strings.Contains(frag.String(), former.PublicKey) {
		t.Error("the revoked identity's key is in the fragment")
	}
	if opts.NoAuthUser != "" || len(opts.Users) != 0 || opts.Username != "" || opts.Authorization != "" {
		t.Errorf("the fragment lets someone in without an nkey: no_auth_user %q, users %d, user %q, token set %v",
			opts.NoAuthUser, len(opts.Users), opts.Username, opts.Authorization != "")
	}
	for _, line := range []string{"include ./auth.conf", "nats-server --signal reload"} {
		if !strings.Contains(frag.String(), line) {
			t.Errorf("the header does not say %q", line)
		}
	}
}

// A keyring with no active identity is refused: an empty users list would
// open the server to anonymous clients.
func TestNATSConfigRefusesNoUsers(t *testing.T) {
	store := auth.Store{Dir: t.TempDir()}
	for _, kr := range []func() *trust.Keyring{
		func() *trust.Keyring { return &trust.Keyring{} },
		func() *trust.Keyring {
			if _, err := store.Create("only", trust.Admin, ""); err != nil {
				t.Fatal(err)
			}
			if err := store.Revoke("only"); err != nil {
				t.Fatal(err)
			}
			kr, err := store.Keyring()
			if err != nil {
				t.Fatal(err)
			}
			return kr
		},
	} {
		var out bytes.Buffer
		err := auth.NATSConfig(&out, kr(), "k")
		if err == nil || !strings.Contains(err.Error(), "anonymous") {
			t.Errorf("NATSConfig of a keyring without active identities: err %v, want a refusal naming the risk", err)
		}
		if out.Len() != 0 {
			t.Errorf("NATSConfig wrote %d bytes on error", out.Len())
		}
	}
}
