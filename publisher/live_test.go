package publisher

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
)

// These tests play live writers by hand (protocol.HeaderLive): an event
// goes live on the reply subject and its copy into the replies stream,
// both with the writer's epoch, as a worker sends them.

type liveWriter struct {
	t      *testing.T
	nc     *nats.Conn
	js     jetstream.JetStream
	p      *Publisher
	tenant string
	id     string
}

func setupLive(t *testing.T, id string) (*Publisher, *liveWriter) {
	t.Helper()
	s := natstest.RunServer(t)
	nc, js := natstest.JetStream(t, s.ClientURL())
	if _, err := topology.Ensure(context.Background(), js, topology.Config{}); err != nil {
		t.Fatal(err)
	}
	p, err := New(natstest.Connect(t, s.ClientURL()), WithIdleProbe(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return p, &liveWriter{t: t, nc: nc, js: js, p: p, tenant: "default", id: id}
}

func (w *liveWriter) msg(subject string, epoch uint64, ev protocol.Event) *nats.Msg {
	ev.V, ev.ID = 1, w.id
	b, _ := ev.Marshal()
	m := nats.NewMsg(subject)
	m.Data = b
	m.Header.Set(protocol.HeaderEpoch, strconv.FormatUint(epoch, 10))
	m.Header.Set(jetstream.MsgIDHeader, w.p.names.ReplyWrite(w.tenant, w.id)+":"+strconv.FormatUint(ev.Seq, 10))
	return m
}

// live publishes ev on the reply subject only: shown, never stored.
func (w *liveWriter) live(epoch uint64, ev protocol.Event) {
	w.t.Helper()
	if err := w.nc.PublishMsg(w.msg(w.p.names.Reply(w.tenant, w.id), epoch, ev)); err != nil {
		w.t.Fatal(err)
	}
}

// store stores ev (the stream republishes it on the reply subject).
func (w *liveWriter) store(epoch uint64, ev protocol.Event) {
	w.t.Helper()
	if _, err := w.js.PublishMsg(context.Background(), w.msg(w.p.names.ReplyWrite(w.tenant, w.id), epoch, ev)); err != nil {
		w.t.Fatal(err)
	}
}

// both publishes ev live and stores it, as a live writer does.
func (w *liveWriter) both(epoch uint64, ev protocol.Event) {
	w.t.Helper()
	w.live(epoch, ev)
	w.store(epoch, ev)
}

// content applies the events as Complete does.
func content(evs []protocol.Event) string {
	var s string
	for _, ev := range evs {
		switch ev.Type {
		case protocol.EventChunk:
			s += ev.Content
		case protocol.EventReset:
			s = ""
		}
	}
	return s
}

// TestLiveEventsMissedAreRecoveredInOrder: a producer that misses live
// events (here: every other one never reaches it live) reads them from
// the stream, every one, in order, each once.
func TestLiveEventsMissedAreRecoveredInOrder(t *testing.T) {
	t.Parallel()
	p, w := setupLive(t, "gappy")
	r, err := p.subscribe(w.tenant, w.id)
	if err != nil {
		t.Fatal(err)
	}
	w.both(1, protocol.Event{Seq: 1, Type: protocol.EventMeta})
	for seq := uint64(2); seq <= 20; seq++ {
		ev := protocol.Event{Seq: seq, Type: protocol.EventChunk, Content: strconv.FormatUint(seq, 10) + " "}
		if seq%2 == 0 {
			w.store(1, ev) // lost live
		} else {
			w.both(1, ev)
		}
	}
	w.store(1, protocol.Event{Seq: 21, Type: protocol.EventDone, FinishReason: "stop"})
	got := readAll(t, r)
	if len(got) != 21 {
		t.Fatalf("got %d events, want 21: %+v", len(got), got)
	}
	want := ""
	for i, ev := range got {
		if ev.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, ev.Seq)
		}
		if i > 0 && i < 20 {
			want += strconv.Itoa(i+1) + " "
		}
	}
	if c := content(got); c != want {
		t.Errorf("content %q, want %q", c, want)
	}
}

// TestFencedWriterNeverSpliced: writer 1 shows an event live that it never
// stores (its copy was refused, or it died), then writes on late; writer 2,
// the job's redelivery, takes over from what is stored with a reset at the
// next seq. The producer gets writer 1's events up to the takeover, then
// the reset and writer 2's events only: writer 1's late ones never mix in.
func TestFencedWriterNeverSpliced(t *testing.T) {
	t.Parallel()
	for _, sawUnstored := range []bool{true, false} {
		t.Run("saw unstored event "+strconv.FormatBool(sawUnstored), func(t *testing.T) {
			t.Parallel()
			p, w := setupLive(t, "fenced")
			r, err := p.subscribe(w.tenant, w.id)
			if err != nil {
				t.Fatal(err)
			}
			w.both(1, protocol.Event{Seq: 1, Type: protocol.EventMeta})
			w.both(1, protocol.Event{Seq: 2, Type: protocol.EventChunk, Content: "old "})
			if sawUnstored {
				w.live(1, protocol.Event{Seq: 3, Type: protocol.EventChunk, Content: "unstored "})
			}
			// Writer 2 resumes after seq 2, the last stored.
			w.both(2, protocol.Event{Seq: 3, Type: protocol.EventReset})
			w.live(1, protocol.Event{Seq: 4, Type: protocol.EventChunk, Content: "late "}) // writer 1, fenced
			w.both(2, protocol.Event{Seq: 4, Type: protocol.EventMeta})
			w.live(1, protocol.Event{Seq: 5, Type: protocol.EventChunk, Content: "later "})
			w.both(2, protocol.Event{Seq: 5, Type: protocol.EventChunk, Content: "new"})
			w.live(1, protocol.Event{Seq: 6, Type: protocol.EventChunk, Content: " zombie"}) // ahead of writer 2's end
			w.store(2, protocol.Event{Seq: 6, Type: protocol.EventDone, FinishReason: "stop"})
			got := readAll(t, r)
			if c := content(got); c != "new" {
				t.Errorf("content %q, want %q: %+v", c, "new", got)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Seq <= got[i-1].Seq && (got[i].Seq != got[i-1].Seq || got[i].Type != protocol.EventReset) {
					t.Errorf("seq %d (%s) after %d; only a takeover's reset may repeat a seq", got[i].Seq, got[i].Type, got[i-1].Seq)
				}
			}
			if last := got[len(got)-1]; last.Type != protocol.EventDone {
				t.Errorf("ended with %s", last.Type)
			}

			// A reader of the stored reply gets the same answer, every
			// seq once.
			attached, err := p.Attach(context.Background(), w.tenant, w.id)
			if err != nil {
				t.Fatal(err)
			}
			stored := readAll(t, attached)
			if c := content(stored); c != "new" || len(stored) != 6 {
				t.Errorf("attached: content %q, %d events", c, len(stored))
			}
		})
	}
}

// storeBatch stores evs as one message, as a live writer stores what it
// showed within a batch delay (protocol.StoredBatch).
func (w *liveWriter) storeBatch(epoch uint64, evs ...protocol.Event) {
	w.t.Helper()
	var raws [][]byte
	for _, ev := range evs {
		ev.V, ev.ID = 1, w.id
		b, _ := ev.Marshal()
		raws = append(raws, b)
	}
	data, err := protocol.StoredBatch(raws)
	if err != nil {
		w.t.Fatal(err)
	}
	m := w.msg(w.p.names.ReplyWrite(w.tenant, w.id), epoch, evs[len(evs)-1])
	m.Data = data
	m.Header.Set(protocol.HeaderBatch, strconv.FormatUint(evs[0].Seq, 10))
	if _, err := w.js.PublishMsg(context.Background(), m); err != nil {
		w.t.Fatal(err)
	}
}

// TestMissedLiveEventsRecoveredFromBatches: the events go out live one by
// one and are stored four to a message; the producer misses every third
// live event and recovers each from the stored batches, in order, once;
// a reader attaching afterwards reads the same events from the batches.
func TestMissedLiveEventsRecoveredFromBatches(t *testing.T) {
	t.Parallel()
	p, w := setupLive(t, "batched")
	r, err := p.subscribe(w.tenant, w.id)
	if err != nil {
		t.Fatal(err)
	}
	w.both(1, protocol.Event{Seq: 1, Type: protocol.EventMeta})
	var batch []protocol.Event
	want := ""
	for seq := uint64(2); seq <= 22; seq++ {
		ev := protocol.Event{Seq: seq, Type: protocol.EventChunk, Content: strconv.FormatUint(seq, 10) + " "}
		if seq == 22 {
			ev = protocol.Event{Seq: seq, Type: protocol.EventDone, FinishReason: "stop"}
		} else {
			want += ev.Content
		}
		if seq%3 != 0 && seq != 22 {
			w.live(1, ev) // every third is lost live; the end is never live
		}
		if batch = append(batch, ev); len(batch) == 4 || seq == 22 {
			w.storeBatch(1, batch...)
			batch = nil
		}
	}
	for name, reply := range map[string]func() *Reply{
		"live":     func() *Reply { return r },
		"attached": func() *Reply { a, err := p.Attach(context.Background(), w.tenant, w.id); mustNot(t, err); return a },
	} {
		got := readAll(t, reply())
		if len(got) != 22 {
			t.Fatalf("%s: %d events, want 22: %+v", name, len(got), got)
		}
		for i, ev := range got {
			if ev.Seq != uint64(i+1) {
				t.Fatalf("%s: event %d has seq %d", name, i, ev.Seq)
			}
		}
		if c := content(got); c != want {
			t.Errorf("%s: content %q, want %q", name, c, want)
		}
	}
}

func mustNot(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestEndStoredByAnotherWriterAfterLiveStart: a first delivery shows its
// meta and a chunk live before storing them; the fleet's maintainer ends
// the job first (a queue timeout stored as the reply's first event, no
// epoch). The producer gets the meta, the chunk, then that end: one
// terminal event, and nothing of the fenced writer after it.
func TestEndStoredByAnotherWriterAfterLiveStart(t *testing.T) {
	t.Parallel()
	p, w := setupLive(t, "raced")
	r, err := p.subscribe(w.tenant, w.id)
	if err != nil {
		t.Fatal(err)
	}
	mustNot(t, p.nc.Flush()) // the subscription is in place before anything goes live
	w.live(1, protocol.Event{Seq: 1, Type: protocol.EventMeta})
	w.live(1, protocol.Event{Seq: 2, Type: protocol.EventChunk, Content: "never stored"})
	end := protocol.Event{V: 1, ID: w.id, Seq: 1, Type: protocol.EventError, Error: &protocol.Error{Code: protocol.CodeQueueTimeout, Message: "queued too long"}}
	b, _ := end.Marshal()
	if _, err := w.js.Publish(context.Background(), w.p.names.ReplyWrite(w.tenant, w.id), b); err != nil {
		t.Fatal(err)
	}
	w.live(1, protocol.Event{Seq: 3, Type: protocol.EventChunk, Content: "zombie"})
	got := readAll(t, r)
	if len(got) != 3 || got[2].Type != protocol.EventError || got[2].Error.Code != protocol.CodeQueueTimeout {
		t.Fatalf("got %+v, want meta, chunk, the queue_timeout error", got)
	}
}
