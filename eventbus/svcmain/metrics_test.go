package svcmain

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/buildinfo"
	"github.com/kis-core/runbook/eventbus/metricstest"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// routerService is a service of one durable consumer, built from the deps
// svcmain gives every service binary.
type routerService struct{ r *eventbus.Router }

func (s routerService) Run(ctx context.Context) error { return s.r.Run(ctx) }

// A service binary's /metrics (the registry svcmain builds) says which
// build runs (runbook_build_info{version,commit,goversion} 1) and how far
// behind the service's durable consumer is.
func TestServiceMetricsHaveBuildInfoAndConsumerLag(t *testing.T) {
	t.Parallel()
	s := natstest.SecureServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bctx, bcancel := context.WithTimeout(ctx, 10*time.Second)
	defer bcancel()
	if _, err := eventbus.NewBus(bctx, s.ConnAs(t, "admin"), eventbus.Options{Source: "admin", Provision: true}); err != nil {
		t.Fatal(err)
	}
	// A free port for --metrics-listen: run logs its address, it does not return it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	o := Options{NATSURL: s.ClientURL(), MetricsListen: addr, Creds: s.Store.SeedPath("preflight"), LogLevel: "error", ShutdownAfter: 5 * time.Second}
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, "preflight", o, func(d Deps) (Service, error) {
			r := eventbus.NewRouter(d.Bus, eventbus.ConsumerOptions{Durable: "preflight"}, d.Log, d.Metrics)
			eventbus.On(r, "change.requested", func(context.Context, *runbookv1.Event, *runbookv1.ChangeRequested) error { return nil })
			return routerService{r}, nil
		})
	}()
	url := "http://" + addr + "/metrics"
	var got metricstest.Samples
	natstest.Eventually(t, 15*time.Second, "the consumer's lag on "+url, func() bool {
		got, err = metricstest.Get(url)
		if err != nil {
			return false
		}
		_, ok := got.Value("runbook_consumer_pending_messages", "consumer", "preflight")
		return ok
	})
	in := buildinfo.Get()
	if v, ok := got.Value("runbook_build_info", "version", in.Version, "commit", in.Commit, "goversion", in.GoVersion); !ok || v != 1 {
		t.Errorf("runbook_build_info = %v, %v; the scrape has %v", v, ok, got.Family("runbook_build_info"))
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the service did not stop")
	}
}
