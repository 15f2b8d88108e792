package manager

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/topology"
)

// TestTakeoverNeverAckedAsACopy: on replies replicated 3 times, where the
// server checks message IDs before the expected last sequence, a takeover
// (the job's second delivery) storing the seq the fenced first delivery
// has just stored is refused for the wrong last sequence — not acked as a
// duplicate of the first writer's event, which would let it write on as
// if the fence had passed. The same writer's retry is still a duplicate.
func TestTakeoverNeverAckedAsACopy(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster")
	}
	t.Parallel()
	c := natstest.RunCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, js := natstest.JetStream(t, c.URLs())
	top, err := topology.Ensure(ctx, js, topology.Config{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	subject := top.Config.Names.ReplyWrite("default", "takeover")
	const jobSeq = 7
	store := func(delivery, seq, last uint64) (*jetstream.PubAck, error) {
		return js.PublishMsg(ctx, replyMsg(subject, jobSeq, delivery, seq, []byte(`{"seq":1}`)), jetstream.WithExpectLastSequencePerSubject(last))
	}
	first, err := store(1, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The second delivery read event 1 as the last one; then the first
	// stored event 2.
	second, err := store(1, 2, first.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := store(2, 2, first.Sequence)
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
		t.Fatalf("the takeover's event 2: ack %+v, err %v; want wrong last sequence", ack, err)
	}
	again, err := store(1, 2, first.Sequence)
	if err != nil || !again.Duplicate || again.Sequence != second.Sequence {
		t.Fatalf("the first writer's retry of event 2: ack %+v, err %v; want a duplicate of stream seq %d", again, err, second.Sequence)
	}
}
