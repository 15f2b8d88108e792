package manager_test

import (
	"context"
	"encoding/json"
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
)

// TestDuplicateID: a job whose ID was used by an earlier, finished
// request (resubmitted after the duplicate window, which a different
// message ID stands in for here) ends at once with a duplicate_id error
// after the earlier reply's events; it is dead-lettered, never
// redelivered, and the earlier reply still reads as it was.
func TestDuplicateID(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	f.StartWorker(nil)
	ctx := ctxFor(t, 30*time.Second)
	job := userJob("first use of the ID")
	job.ID = "dup-1"
	first, err := f.Pub.Complete(ctx, job)
	if err != nil {
		t.Fatal(err)
	}

	sub, _ := reuseID(t, ctx, f, "dup-1")
	m, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := protocol.DecodeEvent(m.Data)
	if ev.Type != protocol.EventError || ev.Error.Code != protocol.CodeDuplicateID || ev.Seq < 3 {
		t.Fatalf("event %s: want a duplicate_id error after the earlier reply", m.Data)
	}
	waitSettled(t, ctx, f)
	if info, _ := f.ConsumerInfo(ctx); info.NumRedelivered != 0 {
		t.Errorf("redelivered %d", info.NumRedelivered)
	}
	found := false
	for _, d := range deadLetters(t, f) {
		found = found || (d.Header.Get(protocol.DeadLetterCode) == string(protocol.CodeDuplicateID) && d.Header.Get(protocol.DeadLetterRequest) == "dup-1")
	}
	if !found {
		t.Error("no duplicate_id dead letter")
	}
	r, err := f.Pub.Attach(ctx, "default", "dup-1")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	if ans, err := r.Collect(ctx); err != nil || ans.Content != first.Content {
		t.Errorf("the earlier reply now reads %+v, %v", ans, err)
	}
}

// TestDuplicateIDWhileRunning: an ID reused while the earlier request is
// still generating: the new job waits, never disturbing the earlier reply
// (which ends with its whole answer), and then ends with duplicate_id;
// the new job's reader never sees the earlier request's events as its own.
func TestDuplicateIDWhileRunning(t *testing.T) {
	t.Parallel()
	stall, release := fleettest.Stalled()
	defer release()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}, Topology: topology.Config{AckWait: time.Second}})
	f.StartWorker(nil)
	ctx := ctxFor(t, 60*time.Second)
	job := userJob("first use of the ID")
	job.ID = "dup-run"
	first := submitEvents(t, ctx, f.Pub, job)
	first.waitFor(t, ctx, func(evs []protocol.Event) bool { return len(evs) > 0 })

	sub, ack := reuseID(t, ctx, f, "dup-run")
	// Both jobs are pulled; several AckWaits pass while the second waits.
	f.WaitConsumer(t, ctx, "both jobs pulled", func(info *jetstream.ConsumerInfo) bool {
		return info.NumAckPending == 2 && info.NumPending == 0
	})
	// What is tested is that the waiting job outlives several AckWaits
	// without a redelivery (it reports progress): time itself must pass,
	// and nothing signals that it has.
	time.Sleep(3 * time.Second)
	if info, err := f.ConsumerInfo(ctx); err != nil || info.NumRedelivered != 0 {
		t.Errorf("redelivered %d (%v): the waiting job must report progress, not be handed back", info.NumRedelivered, err)
	}
	release()
	evs := first.wait(t)
	if last := evs[len(evs)-1]; last.Type != protocol.EventDone {
		t.Fatalf("the earlier request ended with %+v", last)
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ev, _ := protocol.DecodeEvent(m.Data)
		if ev.Type == protocol.EventError && ev.Error.Code == protocol.CodeDuplicateID {
			if got := m.Header.Get(protocol.HeaderJobSeq); got != strconv.FormatUint(ack.Sequence, 10) {
				t.Errorf("duplicate_id error marked for job %q, want %d", got, ack.Sequence)
			}
			break
		}
	}
	waitSettled(t, ctx, f)
}

// reuseID publishes a second job under id, as a producer would once the
// jobs stream's duplicate window has passed (a message ID of its own
// stands in for the passing of the window), and returns a subscription to
// the reply subject (made first) and the job's publish ack.
func reuseID(t *testing.T, ctx context.Context, f *fleettest.Fleet, id string) (*nats.Subscription, *jetstream.PubAck) {
	t.Helper()
	nc, js := natstest.JetStream(t, f.NATS.ClientURL())
	sub, err := nc.SubscribeSync("chat.reply.default." + id)
	if err != nil {
		t.Fatal(err)
	}
	again := userJob("second use of the ID")
	again.ID = id
	msg := nats.NewMsg("chat.jobs.default")
	msg.Data, _ = json.Marshal(again)
	msg.Header.Set(nats.MsgIdHdr, id+"-after-the-window")
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	return sub, ack
}
