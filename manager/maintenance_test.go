package manager_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
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

// TestStrayJobsDeadLettered: jobs the stream stores on subjects no queue
// serves (a token too many, a priority that is none) are delivered by no
// consumer; the maintainer dead-letters them and removes them from the
// queue, and a valid job beside them is answered.
func TestStrayJobsDeadLettered(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	f.StartWorker(func(c *worker.Config) { c.Manager.MaintenanceInterval = 50 * time.Millisecond })
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	ctx := ctxFor(t, 30*time.Second)
	for _, subject := range []string{"chat.jobs.acme.extra", "chat.pjobs.acme.urgent"} {
		if _, err := js.Publish(ctx, subject, []byte(`{"id":"stray","messages":[{"role":"user","content":"lost?"}]}`)); err != nil {
			t.Fatalf("publish on %s: %v", subject, err)
		}
	}
	if _, err := f.Pub.Complete(ctx, userJob("beside the strays")); err != nil {
		t.Fatal(err)
	}
	top := jobs(t, f)
	eventually(t, ctx, "the strays leave the queue", func() bool {
		info, err := top.Jobs.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	dl := deadLetters(t, f)
	if len(dl) != 2 {
		t.Fatalf("dead letters %d, want the 2 strays", len(dl))
	}
	for _, d := range dl {
		if d.Header.Get(protocol.DeadLetterCode) != string(protocol.CodeInvalidRequest) ||
			!strings.Contains(d.Header.Get(protocol.DeadLetterReason), "no queue serves") {
			t.Errorf("dead letter of %s: %v", d.Header.Get(protocol.DeadLetterSubject), d.Header)
		}
	}
}
