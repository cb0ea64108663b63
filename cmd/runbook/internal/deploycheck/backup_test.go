package deploycheck_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kis-core/runbook/cmd/runbook/internal/cli"
	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/auth"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// natsCLI finds the stock nats CLI (.ci/run installs natscli v0.5.0 with
// go install): missing, the test fails under CI=true and is skipped loudly
// otherwise.
func natsCLI(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", "nats")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "the nats CLI is not installed: go install github.com/nats-io/natscli/nats@v0.5.0"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED (not CI): " + msg)
	return ""
}

// The backup and restore of docs/operations.md, command for command: the
// RUNBOOK stream backed up as admin with the nats CLI, restored as admin
// into a fresh server (another keyring: a new deployment), `runbook
// provision` run after it. The run's events come back with their
// sequences, ids and signatures, the stream keeps its no-delete, no-purge
// settings, and a service's durable consumer comes back where it was
// (without it, the service would consume the whole history again).
func TestStreamBackupRestore(t *testing.T) {
	bin := natsCLI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// natsAs runs the nats CLI as identity name of s.
	natsAs := func(s *natstest.Secure, name string, args ...string) (string, error) {
		id, err := auth.Open(s.Store.SeedPath(name))
		if err != nil {
			t.Fatal(err)
		}
		all := append([]string{"--server", s.ClientURL(), "--nkey", s.Store.SeedPath(name), "--inbox-prefix", auth.InboxPrefix(id.PublicKey())}, args...)
		cmd := exec.CommandContext(ctx, bin, all...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err = cmd.Run()
		return out.String(), err
	}
	nats := func(s *natstest.Secure, args ...string) {
		t.Helper()
		if out, err := natsAs(s, "admin", args...); err != nil {
			t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	// The deployment: streams provisioned by admin, events signed by admin,
	// the deployer's durable consumer with the first events acked.
	src := natstest.SecureServer(t)
	adminID, err := auth.Open(src.Store.SeedPath("admin"))
	if err != nil {
		t.Fatal(err)
	}
	srcJS, _ := jetstream.New(src.ConnAs(t, "admin"))
	if err := eventbus.EnsureStreams(ctx, srcJS, eventbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	bus, err := eventbus.NewBus(ctx, src.ConnAs(t, "admin"), eventbus.Options{Source: "backup-test/a", Signer: adminID.KP})
	if err != nil {
		t.Fatal(err)
	}
	const run = "BACKUP-1"
	for i := range 20 {
		ev := eventbus.New(run, &runbookv1.Event_DeployStepStarted{DeployStepStarted: &runbookv1.StepEvent{Index: int32(i), Name: fmt.Sprint("step ", i)}}, i)
		if _, err := bus.Publish(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	want, err := bus.RunHistory(ctx, run)
	if err != nil || len(want) != 20 {
		t.Fatalf("history before the backup: %d events, %v", len(want), err)
	}
	srcStream, err := srcJS.Stream(ctx, eventbus.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := srcStream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "deployer", AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(7, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 7 {
		t.Fatalf("acked %d messages, want 7", n)
	}

	// docs/operations.md: back up, as admin: a service may not.
	dir := filepath.Join(t.TempDir(), "RUNBOOK-backup")
	if out, err := natsAs(src, "reporter", "backup", "stream", eventbus.AuditStream, filepath.Join(t.TempDir(), "by-reporter")); err == nil {
		t.Errorf("the reporter's identity took a backup of the stream:\n%s", out)
	} else if !strings.Contains(out, `Permissions Violation for Publish to "$JS.API.STREAM.SNAPSHOT.RUNBOOK"`) {
		t.Errorf("the reporter's backup failed, but not on the server's permissions: %v\n%s", err, out)
	}
	nats(src, "backup", "stream", eventbus.AuditStream, dir)

	// docs/operations.md: restore into a cluster without the stream, then
	// provision (RUNBOOK_METRICS, and runbook's settings on RUNBOOK).
	dst := natstest.SecureServer(t)
	nats(dst, "backup", "restore", "stream", dir, "--replicas", "1")
	if out, err := natsAs(dst, "admin", "backup", "restore", "stream", dir, "--replicas", "1"); err == nil {
		t.Errorf("a second restore replaced the existing stream:\n%s", out)
	} else if !strings.Contains(out, "already exist") {
		t.Errorf("a second restore failed, but not because the stream exists: %v\n%s", err, out)
	}
	var out, errOut bytes.Buffer
	if code := cli.Execute(ctx, []string{"provision", "--nats-url", dst.ClientURL(), "--creds", dst.Store.SeedPath("admin"), "--replicas", "1"}, &out, &errOut); code != 0 {
		t.Fatalf("runbook provision after the restore: exit %d: %s%s", code, out.String(), errOut.String())
	}

	dstJS, _ := jetstream.New(dst.ConnAs(t, "admin"))
	restored, err := eventbus.NewBus(ctx, dst.ConnAs(t, "admin"), eventbus.Options{Source: "backup-test/b"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := restored.RunHistory(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("restored %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Seq != want[i].Seq || got[i].Event.GetId() != want[i].Event.GetId() {
			t.Errorf("event %d: seq %d id %s, want seq %d id %s", i, got[i].Seq, got[i].Event.GetId(), want[i].Seq, want[i].Event.GetId())
		}
		if key, err := got[i].Publisher(); err != nil || key != adminID.PublicKey() {
			t.Errorf("event %d: signer %q (%v), want the admin who signed it, %s", i, key, err, adminID.PublicKey())
		}
	}
	st, err := dstJS.Stream(ctx, eventbus.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := st.CachedInfo().Config; !cfg.DenyDelete || !cfg.DenyPurge {
		t.Errorf("restored stream: deny delete %v, deny purge %v: want both", cfg.DenyDelete, cfg.DenyPurge)
	}
	if _, err := dstJS.Stream(ctx, eventbus.MetricsStream); err != nil {
		t.Errorf("provision after the restore: %s: %v", eventbus.MetricsStream, err)
	}
	c, err := st.Consumer(ctx, "deployer")
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatal("the deployer's durable consumer was not restored: the deployer would consume the whole history again")
	}
	if err != nil {
		t.Fatal(err)
	}
	if floor := c.CachedInfo().AckFloor.Stream; floor != want[6].Seq {
		t.Errorf("restored consumer's ack floor %d, want %d (7 events acked before the backup)", floor, want[6].Seq)
	}
}
