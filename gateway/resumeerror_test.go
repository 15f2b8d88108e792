package gateway_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/protocol"
)

// TestStreamErrorAfterOutputIsWritten: a stream that cannot go on once
// chunks went out (here a resume whose stored reply misses event 3)
// ends with an error event, as OpenAI ends a stream mid-way — not with
// the connection closing on chunk 2, which a client cannot tell from a
// dropped connection and resumes for ever.
func TestStreamErrorAfterOutputIsWritten(t *testing.T) {
	t.Parallel()
	b := setup(t, fleettest.Options{}, nil)
	ctx := fleettest.Context(t, 30*time.Second)
	const id = "gap"
	store := storer(t, b, id)
	store(1, protocol.Event{Seq: 1, Type: protocol.EventMeta, Model: testModel})
	store(1, protocol.Event{Seq: 2, Type: protocol.EventChunk, Content: "two "})
	store(1, protocol.Event{Seq: 4, Type: protocol.EventChunk, Content: "four "})

	got := readAll(t, openStream(t, ctx, "GET", b.url+"/chat/completions/chatcmpl-"+id+"/stream", "", http.Header{"Last-Event-ID": {"1"}}))
	if len(got) != 2 || content(t, got[0]) != "two " || !strings.Contains(got[1].data, "reply_lost") {
		t.Fatalf("resumed a reply missing event 3: got %q; want chunk 2, then a reply_lost error event", got)
	}
}
