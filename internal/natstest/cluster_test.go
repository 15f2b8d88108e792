package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/chatfleet/chatfleet/internal/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestClusterSurvivesLeaderLoss: a replicated stream keeps taking writes
// on the two servers left after its leader is shut down, through a client
// connected to all three.
func TestClusterSurvivesLeaderLoss(t *testing.T) {
	t.Parallel()
	c := natstest.RunCluster(t, 3)
	_, js := natstest.JetStream(t, c.URLs())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.1", []byte("before")); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("cluster info = %+v, want a leader and 2 replicas", info.Cluster)
	}
	leader := c.Server(info.Cluster.Leader)
	if leader == nil {
		t.Fatalf("no member is named %q", info.Cluster.Leader)
	}
	leader.Shutdown()
	if err := c.WaitReady(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if len(c.Running()) != 2 {
		t.Fatalf("%d servers running, want 2", len(c.Running()))
	}
	// Retried until a new stream leader is elected: a publish the cluster
	// gets while the stream has no leader is never answered, so each try
	// is bounded.
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.Publish(pctx, "t.2", []byte("after"), jetstream.WithMsgID("after")) // a retry is stored once
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("publish after losing the leader: %v", err)
		}
	}
	info, err = s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 || info.Cluster.Leader == leader.NATS().Name() {
		t.Errorf("after the loss: %d msgs, leader %q (the old one was %q)", info.State.Msgs, info.Cluster.Leader, leader.NATS().Name())
	}
}
