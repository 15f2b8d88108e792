package publisher

import (
	"context"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
)

// These tests publish reply events by hand, as a worker would, to put the
// live subscription into the situations recovery exists for.

func setupRecovery(t *testing.T) (*Publisher, func(tenant, id string, ev protocol.Event)) {
	t.Helper()
	s := natstest.RunServer(t)
	_, js := natstest.JetStream(t, s.ClientURL())
	if _, err := topology.Ensure(context.Background(), js, topology.Config{}); err != nil {
		t.Fatal(err)
	}
	p, err := New(natstest.Connect(t, s.ClientURL()), WithIdleProbe(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	publish := func(tenant, id string, ev protocol.Event) {
		ev.V, ev.ID = 1, id
		b, _ := ev.Marshal()
		if _, err := js.Publish(context.Background(), p.names.ReplyWrite(tenant, id), b); err != nil {
			t.Fatal(err)
		}
	}
	return p, publish
}

func readAll(t *testing.T, r *Reply) []protocol.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []protocol.Event
	for ev, err := range r.Events(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// A reply that subscribes after events went out sees the next live event
// out of order, reads the stream from the first event, and loses nothing.
func TestReplyRecoversFromGap(t *testing.T) {
	t.Parallel()
	p, publish := setupRecovery(t)
	publish("default", "r1", protocol.Event{Seq: 1, Type: protocol.EventMeta})
	publish("default", "r1", protocol.Event{Seq: 2, Type: protocol.EventChunk, Content: "a"})
	r, err := p.subscribe("default", "r1") // missed seq 1 and 2 live
	if err != nil {
		t.Fatal(err)
	}
	publish("default", "r1", protocol.Event{Seq: 3, Type: protocol.EventChunk, Content: "b"})
	publish("default", "r1", protocol.Event{Seq: 4, Type: protocol.EventDone})
	got := readAll(t, r)
	if len(got) != 4 {
		t.Fatalf("got %d events, want 4: %+v", len(got), got)
	}
	for i, ev := range got {
		if ev.Seq != uint64(i+1) {
			t.Errorf("event %d has seq %d", i, ev.Seq)
		}
	}
}

// A reply whose events all went out before it subscribed (nothing more
// will come live) finds them with its idle probe.
func TestReplyRecoversWhenQuiet(t *testing.T) {
	t.Parallel()
	p, publish := setupRecovery(t)
	publish("default", "r2", protocol.Event{Seq: 1, Type: protocol.EventMeta})
	publish("default", "r2", protocol.Event{Seq: 2, Type: protocol.EventCancelled})
	r, err := p.subscribe("default", "r2")
	if err != nil {
		t.Fatal(err)
	}
	got := readAll(t, r)
	if len(got) != 2 || got[1].Type != protocol.EventCancelled {
		t.Fatalf("got %+v", got)
	}
}

// Events that are not this request's (another id, junk) are ignored.
func TestReplyIgnoresForeignMessages(t *testing.T) {
	t.Parallel()
	p, publish := setupRecovery(t)
	r, err := p.subscribe("default", "r3")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.nc.Publish(p.names.Reply("default", "r3"), []byte("not json")); err != nil {
		t.Fatal(err)
	}
	publish("default", "r3", protocol.Event{Seq: 1, Type: protocol.EventMeta})
	publish("default", "r3", protocol.Event{Seq: 2, Type: protocol.EventDone})
	if got := readAll(t, r); len(got) != 2 {
		t.Fatalf("got %+v", got)
	}
}
