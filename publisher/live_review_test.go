package publisher

import (
	"context"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// subscribedLive is setupLive with a reply subscribed before anything
// goes live.
func subscribedLive(t *testing.T, id string) (*Publisher, *liveWriter, *Reply) {
	t.Helper()
	p, w := setupLive(t, id)
	r, err := p.subscribe(w.tenant, w.id)
	mustNot(t, err)
	mustNot(t, p.nc.Flush())
	return p, w, r
}

// TestStreamReplayAfterTakeoverRepeatsNothing: writer 1 starts over once
// on its own (a reset, as after an upstream failover), writer 2 takes the
// reply over with its reset, and then the producer misses a live event
// and reads the stream from the first event. Writer 1's own reset, read
// again from the stream, is no takeover: the producer gets every seq once
// (only the takeover's reset may repeat one), never writer 1's old events
// a second time.
func TestStreamReplayAfterTakeoverRepeatsNothing(t *testing.T) {
	t.Parallel()
	_, w, r := subscribedLive(t, "replayed")
	w.both(1, protocol.Event{Seq: 1, Type: protocol.EventMeta})
	w.both(1, protocol.Event{Seq: 2, Type: protocol.EventChunk, Content: "a"})
	w.both(1, protocol.Event{Seq: 3, Type: protocol.EventReset}) // writer 1 starts over
	w.both(1, protocol.Event{Seq: 4, Type: protocol.EventChunk, Content: "b"})
	w.both(2, protocol.Event{Seq: 5, Type: protocol.EventReset}) // writer 2 takes over
	w.both(2, protocol.Event{Seq: 6, Type: protocol.EventChunk, Content: "c"})
	// Seq 8 arrives live before 7 is stored: a gap, so the stream is read.
	w.live(2, protocol.Event{Seq: 8, Type: protocol.EventChunk, Content: "e"})
	w.store(2, protocol.Event{Seq: 7, Type: protocol.EventChunk, Content: "d"})
	w.store(2, protocol.Event{Seq: 8, Type: protocol.EventChunk, Content: "e"})
	w.store(2, protocol.Event{Seq: 9, Type: protocol.EventDone, FinishReason: "stop"})
	got := readAll(t, r)
	var seqs []uint64
	for _, ev := range got {
		seqs = append(seqs, ev.Seq)
	}
	if len(got) != 9 {
		t.Fatalf("seqs %v, want 1 to 9 once each", seqs)
	}
	for i, ev := range got {
		if ev.Seq != uint64(i+1) {
			t.Fatalf("seqs %v, want 1 to 9 once each", seqs)
		}
	}
}

// TestShortTakeoverMissedLiveIsRead: writer 1 showed events live that it
// never stored, then a takeover's reset and end were stored at seqs below
// the next one the producer expects, and both of their republished copies
// were lost (the producer's connection was down). The producer still gets
// the reset and the end from the stream, not a wait timeout.
func TestShortTakeoverMissedLiveIsRead(t *testing.T) {
	t.Parallel()
	p, w, r := subscribedLive(t, "shorttakeover")
	w.both(1, protocol.Event{Seq: 1, Type: protocol.EventMeta})
	w.both(1, protocol.Event{Seq: 2, Type: protocol.EventChunk, Content: "a"})
	w.live(1, protocol.Event{Seq: 3, Type: protocol.EventChunk, Content: "unstored"})
	w.live(1, protocol.Event{Seq: 4, Type: protocol.EventChunk, Content: "unstored"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 4 {
		if _, err := r.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// The producer's subscription is gone while writer 2 stores its
	// reset and end, as over a reconnect.
	mustNot(t, r.live.Unsubscribe())
	w.store(2, protocol.Event{Seq: 3, Type: protocol.EventReset})
	w.store(2, protocol.Event{Seq: 4, Type: protocol.EventError, Error: &protocol.Error{Code: protocol.CodeInternal, Message: "x"}})
	sub, err := p.nc.ChanSubscribe(r.subject, r.liveCh)
	mustNot(t, err)
	r.live = sub
	var got []protocol.Event
	for ev, err := range r.Events(ctx) {
		if err != nil {
			t.Fatalf("after %+v: %v", got, err)
		}
		got = append(got, ev)
	}
	if len(got) != 2 || got[0].Type != protocol.EventReset || got[1].Type != protocol.EventError {
		t.Fatalf("got %+v, want the reset and the error", got)
	}
}
