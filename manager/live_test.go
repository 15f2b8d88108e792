package manager_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// TestLiveWriterFenced: a live job's writer (delivery 1) is mid-answer,
// its chunks shown live and not stored yet, when another writer (as the
// job's redelivery would) stores a reset after the last stored event. The
// first writer's next batch is refused, so it stores nothing past the
// takeover; the producer's answer is the redelivery's alone, never a
// splice of both.
func TestLiveWriterFenced(t *testing.T) {
	t.Parallel()
	stall := make(chan struct{})
	f := fleettest.New(t, fleettest.Options{LLM: midStream(stall), Topology: topology.Config{AckWait: 2 * time.Second}})
	f.StartWorker(func(c *worker.Config) { c.Manager.ChunkWindow = -1 })
	ctx := ctxFor(t, time.Minute)
	nc, js := natstest.JetStream(t, f.NATS.ClientURL())
	job := userJob("fenced live writer")
	job.ID = "fenced-live"
	liveMsgs := watchReply(t, nc, "chat.reply.default.fenced-live")
	r, err := f.Pub.Submit(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	fleettest.Poll(t, ctx, "meta and 3 chunks live", func() bool { return len(liveMsgs) >= 4 })
	// The other writer, epoch 2, stores a reset after the last stored
	// event, as a resuming delivery does; the first writer's chunks are
	// not stored yet (they wait for StoreBatchDelay).
	takeover := storeTakeover(t, ctx, js, "chat.write.default.fenced-live", job.ID, "2")
	close(stall) // the first writer goes on: its next batch finds the intruder's event

	// The producer's answer is the redelivery's, whole, after a reset.
	ans, err := r.Collect(ctx)
	if err != nil || ans.Resets == 0 || ans.Content != llmtest.Answer(f.LLM.Requests()[0]) {
		t.Fatalf("answer %+v, %v", ans, err)
	}

	// What the first writer showed live: the 3 chunks before the takeover.
	before := 0
	for len(liveMsgs) > 0 {
		m := <-liveMsgs
		if m.Header.Get(jetstream.SequenceHeader) != "" || m.Header.Get(protocol.HeaderEpoch) != "1" {
			continue // a stored copy, or another writer's
		}
		if ev, err := protocol.DecodeEvent(m.Data); err == nil && ev.Seq < 5 {
			before++
		}
	}
	if before < 3 {
		t.Errorf("%d events came live before the takeover, want the 3 chunks", before)
	}

	// What it stored past the takeover: nothing.
	stream, err := js.Stream(ctx, "CHAT_REPLIES")
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); ; seq++ {
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject("chat.write.default.fenced-live"))
		if err != nil {
			break
		}
		seq = m.Sequence
		ev, err := protocol.DecodeEvent(m.Data) // a batch: its last event
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(protocol.HeaderEpoch) == "1" && ev.Seq >= takeover {
			t.Errorf("the fenced writer stored event %d (%s) past the takeover", ev.Seq, ev.Type)
		}
		if epoch := m.Header.Get(protocol.HeaderEpoch); epoch != "" {
			if _, err := strconv.ParseUint(epoch, 10, 64); err != nil {
				t.Errorf("epoch %q", epoch)
			}
		}
	}
}

// TestJobOfOldPublisherNotLive: a job without protocol.HeaderLive (an
// older publisher, or any NATS client that does not ask) is answered as
// before live events: every event on the reply subject is the stream's
// republished copy, none carries an epoch, and the answer is whole.
func TestJobOfOldPublisherNotLive(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	f.StartWorker(nil)
	ctx := ctxFor(t, 30*time.Second)
	nc, js := natstest.JetStream(t, f.NATS.ClientURL())
	msgs := watchReply(t, nc, "chat.reply.default.old-publisher")
	job := userJob("asked the old way")
	job.ID = "old-publisher"
	msg := nats.NewMsg("chat.jobs.default")
	msg.Data, _ = json.Marshal(job)
	msg.Header.Set(jetstream.MsgIDHeader, protocol.MsgID(job.Tenant, job.ID))
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	var content string
	for ended := false; !ended; {
		select {
		case m := <-msgs:
			if m.Header.Get(jetstream.SequenceHeader) == "" || m.Header.Get(protocol.HeaderEpoch) != "" {
				t.Fatalf("a live event for a job that did not ask: %v %s", m.Header, m.Data)
			}
			ev, err := protocol.DecodeEvent(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			content += ev.Content
			ended = ev.Type.Terminal()
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	if want := llmtest.Answer(f.LLM.Requests()[0]); content != want {
		t.Errorf("content %q, want %q", content, want)
	}
}

// watchReply subscribes to a reply subject as a raw NATS client: every
// message, live or republished, until the test ends.
func watchReply(t *testing.T, nc *nats.Conn, subject string) chan *nats.Msg {
	t.Helper()
	msgs := make(chan *nats.Msg, 256)
	sub, err := nc.ChanSubscribe(subject, msgs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// storeTakeover stores a reset on a reply (subject chat.write.<tenant>.<id>)
// as a resuming delivery does: after the last stored event, or first
// when nothing is stored yet, expecting that last event. epoch, when not
// empty, is its protocol.HeaderEpoch. It returns the reset's seq.
func storeTakeover(t *testing.T, ctx context.Context, js jetstream.JetStream, subject, id, epoch string) uint64 {
	t.Helper()
	stream, err := js.Stream(ctx, "CHAT_REPLIES")
	if err != nil {
		t.Fatal(err)
	}
	seq, lastStored := uint64(1), uint64(0)
	last, err := stream.GetLastMsgForSubject(ctx, subject)
	switch {
	case err == nil:
		lastEv, err := protocol.DecodeEvent(last.Data)
		if err != nil {
			t.Fatal(err)
		}
		seq, lastStored = lastEv.Seq+1, last.Sequence
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		t.Fatal(err)
	}
	reset := protocol.Event{V: 1, ID: id, Seq: seq, Type: protocol.EventReset}
	msg := nats.NewMsg(subject)
	msg.Data, _ = reset.Marshal()
	if epoch != "" {
		msg.Header.Set(protocol.HeaderEpoch, epoch)
	}
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(lastStored)); err != nil {
		t.Fatal(err)
	}
	return seq
}
