package allinone_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kis-core/runbook/cmd/runbook/internal/allinone"
	"github.com/kis-core/runbook/eventbus/svcmain"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// Each replica names itself in its events' source: two deployer processes
// on one NATS server, with the same identity (the deployer's seed), one
// named by default (<host>:<pid>) and one by RUNBOOK_INSTANCE, each run a
// run's deploy; every event a deployer published says which of the two it
// was. runbook serve's services carry its --instance.
func TestReplicasNameThemselves(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the deployer binary")
	}
	depBin := buildService(t, "deployer")
	p := startPipeline(t, func(o *allinone.Options) {
		o.Without = []string{"deployer"}
		o.Instance = "serve-a"
	})
	dir := t.TempDir()
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, svcmain.EnvInstance+"=") })
	deployer := func(name string, env []string) *exec.Cmd {
		t.Helper()
		cmd := exec.Command(depBin, "--nats-url", p.srv.NATSURL(), "--metrics-listen", "127.0.0.1:0", "--ack-wait", "2s",
			"--creds", p.srv.Creds("deployer"), "--keyring", p.srv.Identities().KeyringPath())
		cmd.Env = env
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
			logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("%s log:\n%s", name, b)
			}
		})
		return cmd
	}
	good := []byte(fmt.Sprintf(replicaPlan, filepath.Join(dir, "steps.log"), "true"))
	runOne := func() []*runbookv1.Event {
		t.Helper()
		run := p.submit(t, good)
		if rr := p.report(t, run, 60*time.Second); rr.Status != "SUCCESS" {
			t.Fatalf("run %s ended %s: %v", run, rr.Status, types(p.history(t, run)))
		}
		return p.history(t, run)
	}

	// A alone runs the first run's deploy.
	a := deployer("deployer-a", env)
	first := runOne()
	// B starts, A stops (SIGTERM: it drains), B runs the second.
	deployer("deployer-b", append(slices.Clone(env), svcmain.EnvInstance+"=blue"))
	if err := a.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- a.Wait() }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("deployer A exited with %v after SIGTERM", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("deployer A did not stop within 20s of SIGTERM")
	}
	second := runOne()

	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	wantA := fmt.Sprintf("deployer/%s:%d", host, a.Process.Pid)
	wantB := "deployer/blue"
	for _, c := range []struct {
		evs  []*runbookv1.Event
		want string
	}{{first, wantA}, {second, wantB}} {
		got := sources(c.evs, "deployer/")
		if len(got) != 1 || got[0] != c.want {
			t.Errorf("the deployer's events name %v, want only %q: %v", got, c.want, sourcesByType(c.evs))
		}
		if ev := firstOfType(c.evs, "deploy.started"); ev == nil || ev.GetSource() != c.want {
			t.Errorf("deploy.started from %q, want %q", ev.GetSource(), c.want)
		}
		if got := sources(c.evs, "preflight/"); len(got) != 1 || got[0] != "preflight/serve-a" {
			t.Errorf("serve's preflight published as %v, want preflight/serve-a", got)
		}
	}
}

// sources lists, once each, the sources of evs that begin with prefix.
func sources(evs []*runbookv1.Event, prefix string) []string {
	var out []string
	for _, ev := range evs {
		if s := ev.GetSource(); strings.HasPrefix(s, prefix) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func sourcesByType(evs []*runbookv1.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.GetType() + "@" + ev.GetSource()
	}
	return out
}

func firstOfType(evs []*runbookv1.Event, typ string) *runbookv1.Event {
	for _, ev := range evs {
		if ev.GetType() == typ {
			return ev
		}
	}
	return nil
}
