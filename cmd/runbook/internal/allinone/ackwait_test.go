package allinone_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
)

// Every service binary honours --ack-wait: the durable consumer it creates
// (the reporter's notifier included) has the given AckWait, not the
// router's default. The same processes show the binaries' --version and
// their JSON logs: one "service" key a line (the binary's name).
func TestEveryServiceHonoursAckWait(t *testing.T) {
	if testing.Short() {
		t.Skip("builds five binaries")
	}
	root := repoRoot(t)
	bin, services := buildServices(t)
	s := natstest.Server(t)
	ctx := context.Background()
	js, err := jetstream.New(natstest.Conn(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if err := eventbus.EnsureStreams(ctx, js, eventbus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range services {
		out, err := exec.Command(filepath.Join(bin, name), "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), name+" ") || !strings.Contains(string(out), "(commit ") || !strings.Contains(string(out), runtime.Version()) {
			t.Errorf("%s --version: %v %q", name, err, out)
		}
	}
	const ackWait = 47 * time.Second
	for _, name := range services {
		cmd := exec.Command(filepath.Join(bin, name), "--nats-url", s.ClientURL(), "--metrics-listen", "127.0.0.1:0",
			"--insecure-no-auth", "--ack-wait", ackWait.String())
		cmd.Dir = root
		logf, _ := os.Create(filepath.Join(bin, name+".log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range services {
				b, _ := os.ReadFile(filepath.Join(bin, name+".log"))
				t.Logf("%s log:\n%s", name, b)
			}
		}
	})
	for _, durable := range []string{"preflight", "deployer", "monitor", "tester", "notifier"} {
		var got time.Duration
		natstest.Eventually(t, 30*time.Second, "consumer "+durable+" created", func() bool {
			c, err := js.Consumer(ctx, eventbus.AuditStream, durable)
			if err != nil {
				return false
			}
			got = c.CachedInfo().Config.AckWait
			return true
		})
		if got != ackWait {
			t.Errorf("consumer %s has AckWait %s, want --ack-wait %s", durable, got, ackWait)
		}
	}
	for _, name := range services {
		natstest.Eventually(t, 10*time.Second, name+" logged its start", func() bool {
			b, _ := os.ReadFile(filepath.Join(bin, name+".log"))
			return strings.Contains(string(b), `"msg":"started"`)
		})
		b, _ := os.ReadFile(filepath.Join(bin, name+".log"))
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			keys, err := topLevelKeys(line)
			if err != nil {
				t.Errorf("%s: a log line that is not a JSON object (%v): %s", name, err, line)
				continue
			}
			if dup := duplicates(keys); len(dup) > 0 {
				t.Errorf("%s: duplicate keys %v in %s", name, dup, line)
			}
			var rec struct{ Service string }
			if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Service != name {
				t.Errorf("%s: log line with service %q: %s", name, rec.Service, line)
			}
		}
	}
}

// topLevelKeys are the keys of a JSON object in order, repeats included
// (encoding/json keeps the last of two equal keys silently).
func topLevelKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not an object: %v", err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

func duplicates(keys []string) []string {
	seen := map[string]bool{}
	var dup []string
	for _, k := range keys {
		if seen[k] {
			dup = append(dup, k)
		}
		seen[k] = true
	}
	return dup
}
