package manager_test

import (
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// TestOneWriterPerReply: when another writer stores an event on a running
// request's reply subject (what a second delivery of the job does when the
// first one's worker was cut off longer than AckWait), the first writer
// leaves the reply at its next event, without acking the job; the job's
// redelivery finishes the reply. The producer reads strictly increasing
// sequence numbers, one terminal event, and the whole answer.
func TestOneWriterPerReply(t *testing.T) {
	t.Parallel()
	stall := make(chan struct{})
	f := fleettest.New(t, fleettest.Options{LLM: midStream(stall), Topology: topology.Config{AckWait: 2 * time.Second}})
	f.StartWorker(func(c *worker.Config) { c.Manager.ChunkWindow = -1 })
	ctx := ctxFor(t, time.Minute)
	r, err := f.Pub.Submit(ctx, userJob("two writers"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	var events []protocol.Event
	for len(events) < 4 { // meta and 3 chunks
		ev, err := r.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	// The other writer stores a reset after the last stored event, as a
	// resuming delivery does. (With live events, what is stored may trail
	// what the producer saw: the reset discards the difference.)
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	storeTakeover(t, ctx, js, "chat.write.default."+r.ID(), r.ID(), "")
	close(stall) // the first writer's next stored batch now finds the intruder's event

	for {
		ev, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("after %d events: %v", len(events), err)
		}
		events = append(events, ev)
		if ev.Type.Terminal() {
			break
		}
	}
	var content string
	for i, ev := range events {
		// Seqs go up by one, but for a reset of the writer that took over,
		// which may take the seq of an event the first one showed and
		// never stored.
		if i > 0 && ev.Seq != events[i-1].Seq+1 && (ev.Type != protocol.EventReset || ev.Seq > events[i-1].Seq) {
			t.Fatalf("event %d has seq %d: %+v", i, ev.Seq, events)
		}
		switch ev.Type {
		case protocol.EventChunk:
			content += ev.Content
		case protocol.EventReset:
			content = ""
		}
	}
	if last := events[len(events)-1]; last.Type != protocol.EventDone || content != llmtest.Answer(f.LLM.Requests()[0]) {
		t.Errorf("ended %s with %q", last.Type, content)
	}
	attached, err := f.Pub.Attach(ctx, "default", r.ID())
	if err != nil {
		t.Fatal(err)
	}
	var storedContent string
	var storedEnd protocol.EventType
	for ev, err := range attached.Events(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		switch ev.Type {
		case protocol.EventChunk:
			storedContent += ev.Content
		case protocol.EventReset:
			storedContent = ""
		}
		storedEnd = ev.Type
	}
	if storedContent != content || storedEnd != protocol.EventDone {
		t.Errorf("the stream holds %q ending in %s; the producer read %q", storedContent, storedEnd, content)
	}
}
