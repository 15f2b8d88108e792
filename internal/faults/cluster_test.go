//go:build faults

package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/topology"
)

// TestClusterNodeLoss: in a 3-node cluster with every stream and bucket
// replicated 3 times, the node leading the jobs stream is shut down while
// 50 jobs are being answered, 15 of them sharing 5 prompts so that
// generations are shared across workers through the in-flight bucket.
// Workers and the publisher are connected to all three nodes. Every job is
// answered in full with exactly one terminal event, and the cluster goes
// on working on 2 nodes.
//
// Each answer streams 3 tokens, pauses, and goes on when the test releases
// it: once the cluster has settled on 2 nodes ("upstream paused"), or just
// as the node goes away, so that events are in flight at the fault
// ("events in flight").
func TestClusterNodeLoss(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		inFlight bool // release the answers as the node goes away
	}{
		{name: "upstream paused"},
		{name: "events in flight", inFlight: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testClusterNodeLoss(t, tt.inFlight)
		})
	}
}

func testClusterNodeLoss(t *testing.T, inFlight bool) {
	c := natstest.RunCluster(t, 3)
	script, release := paused(3, 20*time.Millisecond)
	f := newFleet(t, c.URLs(), options{
		llm:     []llmtest.Option{script},
		topo:    topology.Config{Replicas: 3, AckWait: 5 * time.Second},
		workers: 3,
		release: release,
	})
	ctx := fleettest.Context(t, time.Minute)
	names := f.names
	streams := []string{names.JobsStream(), names.RepliesStream(),
		"KV_" + names.InflightBucket(), "KV_" + names.CacheBucket(), "KV_" + names.CancelBucket()}

	info, err := streamInfo(ctx, f.js, names.JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("jobs stream: %d replicas, cluster %+v; want a leader and 2 replicas", info.Config.Replicas, info.Cluster)
	}
	lost := c.Server(info.Cluster.Leader)
	if lost == nil {
		t.Fatalf("the jobs stream's leader %q is no member", info.Cluster.Leader)
	}

	var jobs []*job
	for i := range 35 {
		jobs = append(jobs, f.submit(ctx, fmt.Sprintf("node-loss-%02d", i), fmt.Sprintf("node loss prompt %d", i)))
	}
	for i := range 15 {
		jobs = append(jobs, f.submit(ctx, fmt.Sprintf("node-loss-shared-%02d", i), fmt.Sprintf("shared prompt %d", i%5)))
	}
	waitTokens(t, ctx, jobs, 3)
	if err := f.waitStored(ctx, jobs); err != nil {
		t.Fatal(err)
	}

	if inFlight {
		release()
	}
	lost.Shutdown()
	if err := c.WaitReady(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := f.links.wait(ctx, "the lost node's clients to come back", func(_, d, r int) bool { return r >= d }); err != nil {
		t.Fatal(err)
	}
	if err := waitLeaders(ctx, f.js, lost.NATS().Name(), streams); err != nil {
		t.Fatal(err)
	}
	release()

	waitDone(t, ctx, jobs)
	if err := f.waitDrained(ctx); err != nil {
		t.Error(err)
	}
	if calls := f.callsByPrompt(); len(calls) != 40 || f.upstream.Calls() < 40 {
		t.Errorf("%d upstream calls for %d prompts; want at least one for each of 40", f.upstream.Calls(), len(calls))
	}
	t.Logf("%d upstream calls for 40 prompts", f.upstream.Calls())

	// Degraded but working: every stream has lost one replica, and a new
	// job is answered.
	for _, name := range streams {
		info, err := streamInfo(ctx, f.js, name)
		if err != nil {
			t.Errorf("stream %s: %v", name, err)
			continue
		}
		if n := offline(info.Cluster); info.Config.Replicas != 3 || n != 1 {
			t.Errorf("stream %s after the loss: %d replicas, %d offline; want 3 and 1", name, info.Config.Replicas, n)
		}
	}
	after := f.submit(ctx, "node-loss-after", "after the loss")
	waitDone(t, ctx, []*job{after})
	jobs = append(jobs, after)
	f.stopWorkers()
	f.checkAnswers(ctx, jobs)
}

func streamInfo(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.CachedInfo(), nil
}

// waitLeaders waits until every stream is led by a server other than
// lost. The server offers no signal for this; it polls.
func waitLeaders(ctx context.Context, js jetstream.JetStream, lost string, streams []string) error {
	for _, name := range streams {
		for {
			// A request the cluster gets while the stream has no leader
			// is never answered: bound each one.
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			info, err := streamInfo(cctx, js, name)
			cancel()
			if err == nil && info.Cluster != nil && info.Cluster.Leader != "" && info.Cluster.Leader != lost {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("stream %s has no new leader (last error %v): %w", name, err, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

// offline counts a stream's replicas that are offline.
func offline(c *jetstream.ClusterInfo) int {
	if c == nil {
		return -1
	}
	n := 0
	for _, p := range c.Replicas {
		if p.Offline {
			n++
		}
	}
	return n
}
