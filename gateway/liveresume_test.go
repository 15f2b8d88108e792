package gateway_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/protocol"
)

// TestResumeAfterTakeoverBelowLastEventID: with live replies a client may
// have seen events the stream never stored. Here it saw the meta (stored)
// and chunks 2 to 4 of writer 1, live; writer 1 died with only the meta
// stored, and writer 2 took over with a reset at seq 2 and a whole new
// answer. Resuming after seq 4 must not splice writer 2's tail onto
// writer 1's head: the client gets stream_reset (its partial output is
// void), not chunk 5 and [DONE].
func TestResumeAfterTakeoverBelowLastEventID(t *testing.T) {
	t.Parallel()
	b := setup(t, fleettest.Options{}, nil)
	ctx := fleettest.Context(t, 30*time.Second)
	const id = "taken-over"
	storeTakenOver(t, b, id, false)

	got := readAll(t, openStream(t, ctx, "GET", b.url+"/chat/completions/chatcmpl-"+id+"/stream", "", http.Header{"Last-Event-ID": {"4"}}))
	if len(got) == 0 || !strings.Contains(got[0].data, "stream_reset") {
		t.Fatalf("resumed after seq 4 of writer 1, got %q; want stream_reset, not writer 2's tail", got)
	}
}

// TestResumeAfterTakeoverFromItsWriter: a client that saw writer 2's
// reset before any output (writer 1 stored only its meta), then writer 2's
// chunks up to seq 4 (SSE id "2:4"), resumes into writer 2's answer: chunk
// 5 and the end, with ids naming writer 2 — not stream_reset.
func TestResumeAfterTakeoverFromItsWriter(t *testing.T) {
	t.Parallel()
	b := setup(t, fleettest.Options{}, nil)
	ctx := fleettest.Context(t, 30*time.Second)
	const id = "taken-over-seen"
	storeTakenOver(t, b, id, false)

	got := readAll(t, openStream(t, ctx, "GET", b.url+"/chat/completions/chatcmpl-"+id+"/stream", "", http.Header{"Last-Event-ID": {"2:4"}}))
	if len(got) != 3 || content(t, got[0]) != "new5 " || got[2].data != "[DONE]" {
		t.Fatalf("resumed after writer 2's seq 4, got %q; want chunk 5, the finish and [DONE]", got)
	}
	if got[0].id != "2:5" || got[1].id != "2:6" {
		t.Errorf("ids %q, %q; want 2:5 and 2:6 (writer 2's events)", got[0].id, got[1].id)
	}
}

// TestResumeNeverPastAResetAfterOutput: no resume position takes a
// client past a reset that follows output it was sent — whatever id it
// sends. A stream that ends with stream_reset gives that error no id, so
// an EventSource that reconnects (with the last id it saw, its last
// chunk's) gets stream_reset again, not the restarted answer's tail after
// the old head: the same writer's restart, and a takeover after output of
// the writer before it (an id naming the new writer cannot come after
// that output: the client's stream ended at the reset).
func TestResumeNeverPastAResetAfterOutput(t *testing.T) {
	t.Parallel()
	b := setup(t, fleettest.Options{}, nil)
	ctx := fleettest.Context(t, 30*time.Second)
	const restarted = "restarted"
	store := storer(t, b, restarted)
	store(1, protocol.Event{Seq: 1, Type: protocol.EventMeta, Model: testModel})
	store(1, protocol.Event{Seq: 2, Type: protocol.EventChunk, Content: "old2 "})
	store(1, protocol.Event{Seq: 3, Type: protocol.EventChunk, Content: "old3 "})
	store(1, protocol.Event{Seq: 4, Type: protocol.EventReset})
	store(1, protocol.Event{Seq: 5, Type: protocol.EventChunk, Content: "new5 "})
	store(1, protocol.Event{Seq: 6, Type: protocol.EventDone, FinishReason: "stop"})
	const takenOver = "taken-over-after-output"
	storeTakenOver(t, b, takenOver, true)

	resume := func(id, after string) []sseEvent {
		return readAll(t, openStream(t, ctx, "GET", b.url+"/chat/completions/chatcmpl-"+id+"/stream", "", http.Header{"Last-Event-ID": {after}}))
	}
	got := resume(restarted, "2")
	if len(got) != 2 || content(t, got[0]) != "old3 " || !strings.Contains(got[1].data, "stream_reset") || got[1].id != "" {
		t.Fatalf("resumed after 2: %q; want old3, then stream_reset without an id", got)
	}
	for _, c := range []struct{ id, after string }{
		{restarted, "3"}, {restarted, "4"}, {restarted, "5"}, // its last chunk's id, and positions past the reset
		{takenOver, "2"}, {takenOver, "2:3"}, {takenOver, "2:4"},
	} {
		if got := resume(c.id, c.after); len(got) == 0 || !strings.Contains(got[0].data, "stream_reset") {
			t.Errorf("%s resumed after %s: %q; want stream_reset, not the restarted answer", c.id, c.after, got)
		}
	}
}

// storeTakenOver stores reply id as writer 1 and then writer 2 (a
// takeover) left it: writer 1's meta (and, with oldChunk, a chunk at seq
// 2), writer 2's reset, its chunks up to seq 5 and its done.
func storeTakenOver(t *testing.T, b *bundle, id string, oldChunk bool) {
	t.Helper()
	store := storer(t, b, id)
	seq := uint64(1)
	store(1, protocol.Event{Seq: seq, Type: protocol.EventMeta, Model: testModel})
	if oldChunk {
		seq++
		store(1, protocol.Event{Seq: seq, Type: protocol.EventChunk, Content: "old "})
	}
	seq++
	store(2, protocol.Event{Seq: seq, Type: protocol.EventReset})
	for seq++; seq <= 5; seq++ {
		store(2, protocol.Event{Seq: seq, Type: protocol.EventChunk, Content: "new" + strconv.FormatUint(seq, 10) + " "})
	}
	store(2, protocol.Event{Seq: 6, Type: protocol.EventDone, FinishReason: "stop"})
}

// storer returns a function that stores an event of reply id as the
// writer of epoch would, as the tests mean to leave the reply.
func storer(t *testing.T, b *bundle, id string) func(epoch int, ev protocol.Event) {
	t.Helper()
	ctx := fleettest.Context(t, 10*time.Second)
	_, js := natstest.JetStream(t, b.f.NATS.ClientURL())
	subject := b.f.Topology.WithDefaults().Names.ReplyWrite("default", id)
	return func(epoch int, ev protocol.Event) {
		t.Helper()
		ev.V, ev.ID = protocol.Version, id
		data, _ := ev.Marshal()
		m := nats.NewMsg(subject)
		m.Data = data
		m.Header.Set(protocol.HeaderEpoch, strconv.Itoa(epoch))
		m.Header.Set(jetstream.MsgIDHeader, subject+":"+strconv.FormatUint(ev.Seq, 10))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

// readAll reads a stream's events to its end.
func readAll(t *testing.T, r *sseReader) []sseEvent {
	t.Helper()
	var got []sseEvent
	for {
		ev, err := r.next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
}
