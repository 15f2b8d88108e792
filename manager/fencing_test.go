package manager_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/topology"
)

// TestLeaderFencedWhenLeaseLost: when a leader's lease is taken from it
// (here overwritten by a leader that does not exist), its next renewal
// fails, it stops generating at once, and — once the usurper's lease
// expires — it leads again; its producer sees a reset, then the complete
// answer.
func TestLeaderFencedWhenLeaseLost(t *testing.T) {
	t.Parallel()
	stall := make(chan struct{})
	defer close(stall)
	f := fleettest.New(t, fleettest.Options{LLM: midStream(stall), Topology: topology.Config{LeaseTTL: 2 * time.Second}})
	w := f.StartWorker(nil)
	ctx := ctxFor(t, time.Minute)

	r, err := f.Pub.Submit(ctx, userJob("fence me"))
	if err != nil {
		t.Fatal(err)
	}
	producer := watch(ctx, r)
	<-producer.firstChunk

	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	kv, err := js.KeyValue(ctx, f.Topology.WithDefaults().Names.InflightBucket())
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(ctx)
	keys = slices.DeleteFunc(keys, func(k string) bool { return !strings.Contains(k, ".") }) // not the maintainer's lease
	if err != nil || len(keys) != 1 {
		t.Fatalf("in-flight keys = %v, %v", keys, err)
	}
	usurper, _ := json.Marshal(map[string]string{"gen": "ghost-gen", "tenant": "default", "worker": "ghost", "request": "ghost"})
	if _, err := kv.Put(ctx, keys[0], usurper); err != nil {
		t.Fatal(err)
	}
	// The renewal fails within a third of the TTL: the upstream call stops.
	if err := f.LLM.WaitDisconnects(ctx, 1); err != nil {
		t.Fatalf("the fenced leader kept generating: %v", err)
	}
	<-producer.done
	want := llmtest.Answer(f.LLM.Requests()[0])
	if producer.err != nil || producer.answer.Content != want || producer.answer.Resets != 1 {
		t.Errorf("producer: err %v, resets %d, content %q", producer.err, producer.answer.Resets, producer.answer.Content)
	}
	if f.LLM.Calls() != 2 {
		t.Errorf("upstream calls = %d, want 2", f.LLM.Calls())
	}
	if st := w.Manager().Stats(); st.LeasesLost != 1 {
		t.Errorf("leases lost = %d, want 1", st.LeasesLost)
	}
}

// TestLeaseRenewedDuringLongGeneration: a generation three times longer
// than the lease TTL keeps its lease by renewing it; its follower on
// another worker never takes over.
func TestLeaseRenewedDuringLongGeneration(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{
		LLM:      []llmtest.Option{llmtest.WithDelay(0, 300*time.Millisecond)}, // ~3s for the default answer
		Topology: topology.Config{LeaseTTL: time.Second},
	})
	w1 := f.StartWorker(capacity(1))
	ctx := ctxFor(t, time.Minute)
	job := userJob("a long answer")
	leader := submit(t, ctx, f.Pub, job)
	<-leader.metaRead
	w2 := f.StartWorker(nil)
	follower := submit(t, ctx, f.Pub, job)
	for _, s := range []*submitted{leader, follower} {
		if r := s.wait(t); r.err != nil || r.answer.Resets != 0 {
			t.Fatalf("%s", describe(r))
		}
	}
	if leader.res.answer.Timings.TotalMS < 3000 {
		t.Fatalf("the generation took %.0fms; the test needs three lease TTLs", leader.res.answer.Timings.TotalMS)
	}
	st := statsOf(w1, w2)
	if f.LLM.Calls() != 1 || st.Takeovers != 0 || st.LeasesLost != 0 {
		t.Errorf("calls %d, takeovers %d, leases lost %d; want 1, 0, 0", f.LLM.Calls(), st.Takeovers, st.LeasesLost)
	}
}
