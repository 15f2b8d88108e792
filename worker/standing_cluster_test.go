package worker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// TestStandingPullStopLosesNoJobInACluster: in a 3-node cluster, a worker
// connected to a node that does not lead its queues' consumers, with one
// request slot, gets a job for tenant a and one for tenant b at once, a
// hundred times over. Its standing pull waits on the queue it pulled from
// last; the other tenant's announcement stops it to reclaim the slot just
// as the consumer's leader sends it its own tenant's job. Draining the
// subscription does not wait for the leader: a job it sent before it
// heard of the unsubscribe reaches no one and waits out its ack wait
// (30s): delivered, not acked, and run by nobody. Every job must be
// answered well within it. (With no_wait pulls, before standing pulls,
// this passes; FetchWait is short so that rescans find the jobs a pull
// missed because the stream announced them before their consumer counted
// them.)
func TestStandingPullStopLosesNoJobInACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster")
	}
	t.Parallel()
	c := natstest.RunCluster(t, 3)
	upstream := llmtest.New()
	t.Cleanup(upstream.Close)
	ctx := fleettest.Context(t, 2*time.Minute)
	topo := topology.Config{Replicas: 3}
	_, js := natstest.JetStream(t, c.URLs())
	top, err := topology.Ensure(ctx, js, topo)
	if err != nil {
		t.Fatal(err)
	}
	leaders := map[string]bool{}
	for _, tenant := range []string{"a", "b"} {
		q, err := top.Queue(ctx, tenant, "normal")
		if err != nil {
			t.Fatal(err)
		}
		info, err := q.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		leaders[info.Cluster.Leader] = true
	}
	var url string
	for _, s := range c.Running() {
		if !leaders[s.NATS().Name()] {
			url = s.ClientURL()
		}
	}
	if url == "" {
		t.Skip("both queues' consumers have different leaders: no node leads neither")
	}

	cfg := worker.Config{ID: "w", Topology: topo, FetchWait: 250 * time.Millisecond, Logger: fleettest.Logger(),
		LLM: llm.Config{BaseURL: upstream.URL(), APIKey: "test-key"}}
	withModel(&cfg)
	cfg.Manager.MaxConcurrentRequests = 1
	w, err := worker.New(cfg, natstest.Connect(t, url))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fleettest.StopWorker(t, w) })
	pub, err := publisher.New(natstest.Connect(t, c.URLs()))
	if err != nil {
		t.Fatal(err)
	}

	for i := range 100 {
		var wg sync.WaitGroup
		replies, errs := make([]*publisher.Reply, 2), make([]error, 2)
		for k, tenant := range []string{"a", "b"} {
			wg.Go(func() {
				j := userJob(fmt.Sprintf("%s %d", tenant, i))
				j.Tenant = tenant
				replies[k], errs[k] = pub.Submit(ctx, j)
			})
		}
		wg.Wait()
		for k, r := range replies {
			if errs[k] != nil {
				t.Fatal(errs[k])
			}
			answered, cancel := context.WithTimeout(ctx, 10*time.Second) // a third of the ack wait
			_, err := r.Collect(answered)
			cancel()
			r.Stop()
			if err != nil {
				q, _ := top.Queue(ctx, r.Tenant(), "normal")
				info, _ := q.Info(ctx)
				t.Fatalf("round %d, tenant %s's job: %v; its queue: %d delivered and not acked, %d not delivered; the worker runs %d",
					i, r.Tenant(), err, info.NumAckPending, info.NumPending, w.Manager().Stats().Active)
			}
		}
	}
}
