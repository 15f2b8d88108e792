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
	_, js := natstest.JetStream(t, b.f.NATS.ClientURL())
	const id = "taken-over"
	subject := b.f.Topology.WithDefaults().Names.ReplyWrite("default", id)
	store := func(epoch int, ev protocol.Event) {
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
	store(1, protocol.Event{Seq: 1, Type: protocol.EventMeta, Model: testModel})
	store(2, protocol.Event{Seq: 2, Type: protocol.EventReset})
	for seq := uint64(3); seq <= 5; seq++ {
		store(2, protocol.Event{Seq: seq, Type: protocol.EventChunk, Content: "new" + strconv.FormatUint(seq, 10) + " "})
	}
	store(2, protocol.Event{Seq: 6, Type: protocol.EventDone, FinishReason: "stop"})

	r := openStream(t, ctx, "GET", b.url+"/chat/completions/chatcmpl-"+id+"/stream", "", http.Header{"Last-Event-ID": {"4"}})
	var got []string
	for {
		ev, err := r.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.data)
	}
	if len(got) == 0 || !strings.Contains(got[0], "stream_reset") {
		t.Fatalf("resumed after seq 4 of writer 1, got %q; want stream_reset, not writer 2's tail", got)
	}
}
