package manager_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/worker"
)

// TestRefusedLiveBatchEndsStoredReplyInOrder: a live reply's batch is
// refused for good (here: larger than the replies stream takes). The
// events it held were shown live and are never stored; the error the job
// ends with must follow the last stored event, so a reader of the stored
// reply (Attach, a resumed gateway stream) reads it in order, not a gap
// (ErrEventsLost) where the refused events were; the live reader, which
// saw those events, still gets the error (a stored end below its next
// seq).
func TestRefusedLiveBatchEndsStoredReplyInOrder(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{fastUpstream(repeatToken(strings.Repeat("x", 500), 20), nil)}})
	f.StartWorker(func(c *worker.Config) { c.Manager.ChunkWindow = -1 })
	ctx := ctxFor(t, 30*time.Second)
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	s, err := js.Stream(ctx, "CHAT_REPLIES")
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = 2 << 10 // the meta fits, a batch of chunks does not
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	job := userJob("refused batch")
	job.ID = "refused-batch"
	_, err = f.Pub.Complete(ctx, job)
	var jerr *publisher.JobError
	if !errors.As(err, &jerr) || jerr.Err.Code != protocol.CodeInternal {
		t.Fatalf("live reader: %v, want the internal error", err)
	}
	a, err := f.Pub.Attach(ctx, "default", job.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got []protocol.Event
	for ev, err := range a.Events(ctx) {
		if err != nil {
			t.Fatalf("attached, after %d events: %v", len(got), err)
		}
		got = append(got, ev)
	}
	if len(got) == 0 || got[len(got)-1].Type != protocol.EventError {
		t.Fatalf("attached: %+v, want the error last", got)
	}
}
