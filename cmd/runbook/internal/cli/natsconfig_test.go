package cli_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
)

// natsConfigRun runs the runbook command line and fails the test on a
// non-zero exit.
func natsConfigRun(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := cli.Execute(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("runbook %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errOut.String())
	}
	return out.String()
}

// natsConfigIdentities makes the keyring of a compose deployment: admin
// and the five services (as runbook serve and init-identities.sh make
// them), a requester, a viewer, and a requester that is revoked.
func natsConfigIdentities(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{"admin", "preflight", "deployer", "monitor", "tester", "reporter"} {
		natsConfigRun(t, "identity", "create", name, "--role", name, "--identity-dir", dir)
	}
	natsConfigRun(t, "identity", "create", "oncall", "--role", "requester", "--identity-dir", dir)
	natsConfigRun(t, "identity", "create", "watcher", "--role", "viewer", "--identity-dir", dir)
	natsConfigRun(t, "identity", "create", "former", "--role", "requester", "--identity-dir", dir)
	natsConfigRun(t, "identity", "revoke", "former", "--identity-dir", dir)
}

// natsConfigServer starts nats-server in-process from a configuration file
// that includes the generated fragment, as a real deployment does.
func natsConfigServer(t *testing.T, confDir string) (*server.Server, *server.Options) {
	t.Helper()
	conf := filepath.Join(confDir, "nats.conf")
	main := fmt.Sprintf("host: 127.0.0.1\nport: -1\njetstream {\n  store_dir: %q\n  sync_interval: always\n}\ninclude ./auth.conf\n", filepath.Join(t.TempDir(), "js"))
	if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server cannot read %s: %v", conf, err)
	}
	parsed := opts.Clone()
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		t.Fatal("nats-server not ready in 10s")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s, parsed
}

var natsConfigViolationRe = regexp.MustCompile(`Permissions Violation for Publish to "([^"]+)"`)

// natsConfigClient is one identity's connection; it hands the server's
// publish permission violations to violations and its close to closed.
type natsConfigClient struct {
	name       string
	nc         *nats.Conn
	js         jetstream.JetStream
	violations chan string
	closed     chan struct{}
}

func natsConfigConnect(url, seed string) (*natsConfigClient, error) {
	id, err := auth.Open(seed)
	if err != nil {
		return nil, err
	}
	c := &natsConfigClient{name: strings.TrimSuffix(filepath.Base(seed), ".nk"), violations: make(chan string, 16), closed: make(chan struct{})}
	opts := append(id.Options(),
		nats.NoReconnect(),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if m := natsConfigViolationRe.FindStringSubmatch(err.Error()); m != nil {
				c.violations <- m[1]
			}
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
	)
	c.nc, err = nats.Connect(url, opts...)
	if err != nil {
		return nil, err
	}
	if c.js, err = jetstream.New(c.nc); err != nil {
		c.nc.Close()
		return nil, err
	}
	return c, nil
}

// refused runs do and expects the server to refuse its publish to subject:
// the permissions violation arrives and ends the request (no timeout is
// waited for).
func (c *natsConfigClient) refused(t *testing.T, subject string, do func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- do(ctx) }()
	select {
	case got := <-c.violations:
		cancel()
		<-done
		if got != subject {
			t.Errorf("%s: refused on %s, want on %s", c.name, got, subject)
		}
	case err := <-done:
		t.Errorf("%s: publishing to %s was not refused by the server (err %v)", c.name, subject, err)
	}
}

// The fragment `runbook identity nats-config` prints, included by a real
// nats-server's configuration, shuts out anonymous and revoked clients,
// lets each identity in with its seed, enforces each role's publish
// permissions, keeps stream creation to admin, and a regenerated fragment
// takes effect on reload.
func TestNatsConfigRealServer(t *testing.T) {
	dir := t.TempDir()
	idDir := filepath.Join(dir, "identities")
	natsConfigIdentities(t, idDir)
	natsConfigRun(t, "identity", "nats-config", "--identity-dir", idDir, "--out", filepath.Join(dir, "auth.conf"))
	// Without --out it prints the same fragment.
	printed := natsConfigRun(t, "identity", "nats-config", "--identity-dir", idDir)
	if written, err := os.ReadFile(filepath.Join(dir, "auth.conf")); err != nil || printed != string(written) {
		t.Fatalf("--out wrote other text than stdout gets (err %v)", err)
	}
	s, parsed := natsConfigServer(t, dir)
	url := s.ClientURL()
	store := auth.Store{Dir: idDir}
	kr, err := store.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := parsed.Nkeys, auth.Users(kr); !reflect.DeepEqual(got, want) {
		t.Fatalf("the server reads other users than auth.Users:\n got  %v\n want %v", got, want)
	}

	// Anonymous: refused.
	if nc, err := nats.Connect(url, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("anonymous client: %v, want an authorization violation", err)
	}
	// The revoked identity: refused.
	if c, err := natsConfigConnect(url, store.SeedPath("former")); err == nil {
		c.nc.Close()
		t.Fatal("the revoked identity connected")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("revoked identity: %v, want an authorization violation", err)
	}

	// Every active identity connects with its seed.
	clients := map[string]*natsConfigClient{}
	for _, id := range kr.Identities {
		if !id.Revoked.IsZero() {
			continue
		}
		c, err := natsConfigConnect(url, store.SeedPath(id.Name))
		if err != nil {
			t.Fatalf("%s (%s) cannot connect with its seed: %v", id.Name, id.Role, err)
		}
		t.Cleanup(c.nc.Close)
		if err := c.nc.Flush(); err != nil {
			t.Fatalf("%s: %v", id.Name, err)
		}
		clients[id.Name] = c
	}
	if len(clients) != 8 {
		t.Fatalf("%d identities connected, want 8 (admin, five services, requester, viewer)", len(clients))
	}

	// Only admin creates a stream: everyone else's request is refused.
	audit := eventbus.AuditStreamConfig(eventbus.StreamOptions{})
	for name, c := range clients {
		if name == "admin" {
			continue
		}
		c.refused(t, "$JS.API.STREAM.CREATE."+audit.Name, func(ctx context.Context) error {
			_, err := c.js.CreateStream(ctx, audit)
			return err
		})
	}
	if _, err := clients["admin"].js.Stream(context.Background(), audit.Name); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("after the refused creations: stream lookup %v, want not found", err)
	}
	// ... and admin provisions them, as deploy/compose's provision service does.
	natsConfigRun(t, "provision", "--nats-url", url, "--creds", store.SeedPath("admin"))
	for _, st := range []string{eventbus.AuditStream, eventbus.MetricsStream} {
		if _, err := clients["watcher"].js.Stream(context.Background(), st); err != nil {
			t.Fatalf("stream %s after provision: %v", st, err)
		}
	}

	// The requester publishes a change request (the stream stores it), but
	// not a report; the reporter may.
	ctx := context.Background()
	oncall := clients["oncall"]
	if ack, err := oncall.js.Publish(ctx, "runbook.X.change.requested", []byte("{}")); err != nil || ack.Stream != eventbus.AuditStream {
		t.Fatalf("requester publishing runbook.X.change.requested: ack %+v, err %v", ack, err)
	}
	oncall.refused(t, "runbook.X.report.ready", func(ctx context.Context) error {
		_, err := oncall.js.Publish(ctx, "runbook.X.report.ready", []byte("{}"))
		return err
	})
	if _, err := clients["reporter"].js.Publish(ctx, "runbook.X.report.ready", []byte("{}")); err != nil {
		t.Fatalf("reporter publishing runbook.X.report.ready: %v", err)
	}
	clients["watcher"].refused(t, "runbook.X.change.requested", func(ctx context.Context) error {
		_, err := clients["watcher"].js.Publish(ctx, "runbook.X.change.requested", []byte("{}"))
		return err
	})
	st, err := clients["admin"].js.Stream(ctx, eventbus.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 2 {
		t.Fatalf("the audit stream holds %d messages, want 2 (the change request and the report)", n)
	}

	// Revocation as README.md tells it: revoke, regenerate, reload. The
	// revoked requester's open connection is closed, and it cannot connect again.
	natsConfigRun(t, "identity", "revoke", "oncall", "--identity-dir", idDir)
	natsConfigRun(t, "identity", "nats-config", "--identity-dir", idDir, "--out", filepath.Join(dir, "auth.conf"))
	if err := s.Reload(); err != nil { // what SIGHUP / nats-server --signal reload does
		t.Fatalf("reload with the regenerated fragment: %v", err)
	}
	select {
	case <-oncall.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked requester's connection is still open 10s after the reload")
	}
	if c, err := natsConfigConnect(url, store.SeedPath("oncall")); err == nil {
		c.nc.Close()
		t.Fatal("the revoked requester connected after the reload")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("revoked requester after reload: %v, want an authorization violation", err)
	}
	if err := clients["deployer"].nc.Flush(); err != nil {
		t.Fatalf("the deployer lost its connection in the reload: %v", err)
	}
}

// deploy/compose/nats.conf includes the generated auth.conf: without it the
// server does not start (never open), with it the server has exactly the
// keyring's users and keeps sync_interval: always.
func TestNatsConfigComposeConf(t *testing.T) {
	composeConf, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "deploy", "compose", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "runbook.conf")
	if err := os.WriteFile(conf, composeConf, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := server.ProcessConfigFile(conf); err == nil {
		t.Fatal("deploy/compose/nats.conf loads without auth.conf: the server would run without authorization")
	}
	idDir := filepath.Join(dir, "identities")
	natsConfigIdentities(t, idDir)
	natsConfigRun(t, "identity", "nats-config", "--identity-dir", idDir, "--out", filepath.Join(dir, "auth.conf"))
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("deploy/compose/nats.conf with the generated auth.conf: %v", err)
	}
	kr, err := auth.Store{Dir: idDir}.Keyring()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(opts.Nkeys, auth.Users(kr)) {
		t.Fatal("deploy/compose/nats.conf gives the server other users than auth.Users")
	}
	if !opts.SyncAlways {
		t.Error("deploy/compose/nats.conf lost sync_interval: always")
	}
}

// Without a keyring there is nothing to print: a clear error, exit 2.
func TestNatsConfigNoKeyring(t *testing.T) {
	var out, errOut bytes.Buffer
	dir := filepath.Join(t.TempDir(), "none")
	code := cli.Execute(context.Background(), []string{"identity", "nats-config", "--identity-dir", dir}, &out, &errOut)
	if code != 2 || out.Len() != 0 || !strings.Contains(errOut.String(), "no keyring at "+filepath.Join(dir, "keyring.json")) {
		t.Fatalf("exit %d, stdout %q, stderr %q: want exit 2 and an error naming the missing keyring", code, out.String(), errOut.String())
	}
}
