package eventbus_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kis-core/runbook/eventbus"
	"github.com/kis-core/runbook/eventbus/buildinfo"
	"github.com/kis-core/runbook/eventbus/metricstest"
	"github.com/kis-core/runbook/eventbus/natstest"
	runbookv1 "github.com/kis-core/runbook/proto/runbook/v1"
)

// A scrape of a process's registry (eventbus.NewRegistry, as svcmain and
// runbook serve build it) says which build runs, and how far behind its
// durable consumer is, read from JetStream at scrape time: five events
// stored, two being handled (the consumer's concurrency) and three not
// yet delivered; then none once the handlers finish. The consumer is the
// deployer identity's own, with the server's permissions. The dead-letter
// counter is there at 0 before any dead letter (so increase() sees the
// first), and the lag is gone once the router stopped.
func TestConsumerLagAndBuildInfoOnAScrape(t *testing.T) {
	t.Parallel()
	s := natstest.SecureServer(t)
	secureBus(t, s, "admin")
	deployer := secureBus(t, s, "deployer")
	reg := eventbus.NewRegistry()
	m := eventbus.NewMetrics(reg)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	url := srv.URL + "/metrics"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 5 {
		if _, err := deployer.Publish(ctx, deployStarted(fmt.Sprintf("LAG-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	release := make(chan struct{})
	r := eventbus.NewRouter(deployer, eventbus.ConsumerOptions{Durable: "deployer", Concurrency: 2, Keyring: s.Store}, nil, m)
	eventbus.On(r, "deploy.started", func(ctx context.Context, _ *runbookv1.Event, _ *runbookv1.DeployStarted) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()

	lag := func(want map[string]float64) func() bool {
		return func() bool {
			got := metricstest.Scrape(t, url)
			for name, v := range want {
				if g, ok := got.Value(name, "consumer", "deployer"); !ok || g != v {
					return false
				}
			}
			return true
		}
	}
	natstest.Eventually(t, 10*time.Second, "3 pending and 2 ack-pending on the scrape", lag(map[string]float64{
		"runbook_consumer_pending_messages": 3, "runbook_consumer_ack_pending_messages": 2}))

	got := metricstest.Scrape(t, url)
	in := buildinfo.Get()
	if v, ok := got.Value("runbook_build_info", "version", in.Version, "commit", in.Commit, "goversion", in.GoVersion); !ok || v != 1 {
		t.Errorf("runbook_build_info{version=%q,commit=%q,goversion=%q} = %v, %v; the scrape has %v",
			in.Version, in.Commit, in.GoVersion, v, ok, got.Family("runbook_build_info"))
	}
	if v, ok := got.Value("runbook_events_dead_lettered_total", "consumer", "deployer"); !ok || v != 0 {
		t.Errorf("runbook_events_dead_lettered_total{consumer=deployer} = %v, %v; want present at 0", v, ok)
	}
	if len(got.Family("go_goroutines")) == 0 || len(got.Family("process_cpu_seconds_total")) == 0 {
		t.Errorf("the Go and process collectors are missing from the scrape")
	}

	close(release)
	natstest.Eventually(t, 10*time.Second, "no backlog once handled", lag(map[string]float64{
		"runbook_consumer_pending_messages": 0, "runbook_consumer_ack_pending_messages": 0}))
	if v, _ := metricstest.Scrape(t, url).Value("runbook_consumer_info_errors_total", "consumer", "deployer"); v != 0 {
		t.Errorf("%v failed info requests", v)
	}

	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if f := metricstest.Scrape(t, url).Family("runbook_consumer_pending_messages"); len(f) != 0 {
		t.Errorf("a stopped router's lag is still reported: %v", f)
	}
}

// A consumer whose info cannot be read (its connection is gone) is left out
// of the scrape and counted; the scrape itself still answers.
func TestConsumerLagInfoErrorIsCounted(t *testing.T) {
	t.Parallel()
	s := natstest.SecureServer(t)
	secureBus(t, s, "admin")
	deployer := secureBus(t, s, "deployer")
	ctx := context.Background()
	r := eventbus.NewRouter(deployer, eventbus.ConsumerOptions{Durable: "deployer"}, nil, nil)
	eventbus.On(r, "deploy.started", func(context.Context, *runbookv1.Event, *runbookv1.DeployStarted) error { return nil })
	cons, err := deployer.JetStream().CreateOrUpdateConsumer(ctx, eventbus.AuditStream, r.ConsumerConfig())
	if err != nil {
		t.Fatal(err)
	}
	reg := eventbus.NewRegistry()
	lag := eventbus.NewMetrics(reg).Lag
	lag.Timeout = 200 * time.Millisecond
	lag.Track("deployer", cons, nil)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	url := srv.URL + "/metrics"

	if v, ok := metricstest.Scrape(t, url).Value("runbook_consumer_pending_messages", "consumer", "deployer"); !ok || v != 0 {
		t.Fatalf("runbook_consumer_pending_messages = %v, %v; want 0", v, ok)
	}
	deployer.Conn().Close()
	got := metricstest.Scrape(t, url)
	if _, ok := got.Value("runbook_consumer_pending_messages", "consumer", "deployer"); ok {
		t.Errorf("lag reported from a closed connection")
	}
	if v, _ := got.Value("runbook_consumer_info_errors_total", "consumer", "deployer"); v != 1 {
		t.Errorf("runbook_consumer_info_errors_total = %v, want 1", v)
	}
	if _, ok := got.Value("runbook_build_info", "version", buildinfo.Get().Version, "commit", buildinfo.Get().Commit, "goversion", buildinfo.Get().GoVersion); !ok {
		t.Errorf("the rest of the scrape is missing")
	}
}
