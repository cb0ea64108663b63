package eventbus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/natstest"
)

// On a 3-node cluster with R3 streams, the audit stream's leader is killed
// while events are published: every event is stored exactly once (the
// publisher retries what was not acknowledged; Nats-Msg-Id drops the
// duplicates a retry of an acknowledged-but-unanswered publish makes), a
// new leader takes over, and the killed node catches up when it returns.
func TestR3StreamsSurviveTheLeadersLoss(t *testing.T) {
	t.Parallel()
	c := natstest.NewCluster(t, 3)
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	natstest.WaitReady(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bus, err := eventbus.NewBus(ctx, nc, eventbus.Options{Source: "test", Provision: true, Streams: eventbus.StreamOptions{Replicas: 3}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := bus.JetStream().Stream(ctx, eventbus.AuditStream)
	if err != nil {
		t.Fatal(err)
	}
	if r := info.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("audit stream replicas %d, want 3", r)
	}
	publish := func(run string, i int) {
		t.Helper()
		for {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := bus.Publish(pctx, deployDone(run, i))
			pcancel()
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("publish %s/%d: %v", run, i, err)
			}
		}
	}
	const runs, perRun = 5, 20
	for i := range perRun / 2 {
		for r := range runs {
			publish(fmt.Sprintf("R%d", r), i)
		}
	}
	leader := -1
	natstest.Eventually(t, 10*time.Second, "a leader of the audit stream", func() bool {
		leader = c.StreamLeader(eventbus.AuditStream)
		return leader >= 0
	})
	c.Stop(leader)
	for i := perRun / 2; i < perRun; i++ {
		for r := range runs {
			publish(fmt.Sprintf("R%d", r), i)
		}
	}
	if nl := c.StreamLeader(eventbus.AuditStream); nl == leader || nl < 0 {
		t.Errorf("leader after the loss of n%d: %d", leader+1, nl)
	}
	for r := range runs {
		h, err := bus.RunHistory(ctx, fmt.Sprintf("R%d", r))
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, e := range h {
			if seen[e.Event.GetId()] {
				t.Errorf("run R%d: %s stored twice", r, e.Event.GetId())
			}
			seen[e.Event.GetId()] = true
		}
		if len(seen) != perRun {
			t.Errorf("run R%d: %d events, want %d", r, len(seen), perRun)
		}
	}
	// The killed node returns and catches up.
	c.Start(t, leader)
	natstest.Eventually(t, 30*time.Second, fmt.Sprintf("n%d catching up", leader+1), func() bool {
		if c.Node(leader) == nil {
			return false
		}
		si, err := bus.JetStream().Stream(ctx, eventbus.AuditStream)
		if err != nil {
			return false
		}
		for _, p := range si.CachedInfo().Cluster.Replicas {
			if !p.Current {
				return false
			}
		}
		return len(si.CachedInfo().Cluster.Replicas) == 2 && si.CachedInfo().State.Msgs == runs*perRun
	})
}
