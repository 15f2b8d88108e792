package manager_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/topology"
)

// TestMaintenanceFailover: one worker maintains the fleet; when it stops,
// it releases the maintenance lease and another worker takes over — and
// does the work: with its only slot held, a job queued past the queue
// timeout ends with queue_timeout.
func TestMaintenanceFailover(t *testing.T) {
	t.Parallel()
	stall, release := fleettest.Stalled()
	defer release()
	// Workers campaign every third of the lease TTL: 1s here.
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall},
		Topology: topology.Config{QueueTimeout: time.Second, LeaseTTL: 3 * time.Second}})
	ctx := ctxFor(t, time.Minute)
	w1 := f.StartWorker(busyMaintainer)
	if err := w1.Manager().WaitMaintaining(ctx, true); err != nil {
		t.Fatal(err)
	}
	w2 := f.StartWorker(busyMaintainer)
	fleettest.StopWorker(t, w1)
	if err := w2.Manager().WaitMaintaining(ctx, true); err != nil {
		t.Fatalf("w2 never took over: %v", err)
	}
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	kv, err := js.KeyValue(ctx, f.Topology.WithDefaults().Names.InflightBucket())
	if err != nil {
		t.Fatal(err)
	}
	var holder struct{ Worker string }
	if e, err := kv.Get(ctx, "_maintenance"); err != nil || json.Unmarshal(e.Value(), &holder) != nil || holder.Worker != w2.ID() {
		t.Fatalf("maintenance lease: %+v, %v; want it held by %s", holder, err, w2.ID())
	}

	held := submit(t, ctx, f.Pub, userJob("hold the slot"))
	<-held.metaRead
	if r := submit(t, ctx, f.Pub, userJob("queued")).wait(t); !queueEnding(r) {
		t.Fatalf("queued job: %s", describe(r))
	}
	if st := w2.Manager().Stats(); st.QueueTimeouts != 1 {
		t.Errorf("queue timeouts on w2 = %d, want 1", st.QueueTimeouts)
	}
}
