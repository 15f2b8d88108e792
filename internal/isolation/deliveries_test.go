package isolation_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/protocol"
)

// What B can aim at A without any permission on A's subjects: answers of
// the server sent to a reply subject B chooses, and deliveries of a
// consumer of B's own replies.

// reflectionsGoNowhere: the server does not check a reply subject
// against the publisher's permissions, and JetStream answers there (an
// ack, a direct get's message). Inside the fleet account such an answer
// is stored by whatever stream listens on it, a cancel key, say; B's
// reply subjects are in B's own account, where no stream listens. A user
// of the fleet account doing the same is the control: its answer lands.
func reflectionsGoNowhere(t *testing.T, f *fleet, got *answers) {
	ctx := fleettest.Context(t, 10*time.Second)
	n := f.names
	target := n.CancelSubject(tenantA, "a-victim")
	nc := f.connect(t, "tenant-"+tenantB)
	api := f.envs["tenant-"+tenantB].NATSAPI
	tries := map[string]func() error{
		"a job's ack": func() error {
			return nc.PublishRequest(n.Jobs(tenantB), target, []byte(`{"v":1,"id":"b-reflect","tenant":"beta"}`))
		},
		"a direct get's answer": func() error {
			return nc.PublishRequest(api+".DIRECT.GET."+n.RepliesStream()+"."+n.ReplyWrite(tenantB, "b-same"), target, nil)
		},
		"a cancel's ack": func() error {
			return nc.PublishRequest(n.CancelSubject(tenantB, "b-reflect"), target, []byte("now"))
		},
	}
	for what, try := range tries {
		if err := try(); err != nil {
			t.Fatal(err)
		}
		got.add("%s with A's cancel key as the reply subject: accepted; the answer went to B's own account, where nothing stores it", what)
	}
	// B's own request after them: answered once they were handled.
	if _, err := nc.RequestWithContext(ctx, api+".DIRECT.GET."+n.RepliesStream()+"."+n.ReplyWrite(tenantB, "b-same"), nil); err != nil {
		t.Fatal(err)
	}
	// The control, from the fleet account: it lands in the cancel bucket.
	control := n.CancelSubject(tenantA, "control")
	if err := f.ops.PublishRequest(n.CancelSubject(tenantB, "control"), control, []byte("now")); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := f.top.Cancels.Get(ctx, n.RequestKey(tenantA, "control")); err == nil {
			break
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("the control's reflected ack never reached the cancel bucket: the test shows nothing")
		case <-time.After(10 * time.Millisecond): // a fallback poll: nothing signals a stored key
		}
	}
	if _, err := f.top.Cancels.Get(ctx, n.RequestKey(tenantA, "a-victim")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("A's cancel key after B's reflections: %v, want not found", err)
	}
	if err := f.top.Cancels.Purge(ctx, n.RequestKey(tenantA, "control")); err != nil {
		t.Fatal(err)
	}
}

// pushIntoAsReply: nats-server does not check a push consumer's deliver
// subject against its creator's permissions (nats-server issue 8274). B,
// allowed to create consumers of its own stored replies, can have the
// server deliver its own reply events on any subject of the fleet
// account something listens on: A's live reply subject, for one. The
// events are B's (B's tenant's worker wrote them, for B's job); the
// publisher knows its job's sequence from the publish ack and drops them.
// A raw subscriber that does not check Chatfleet-Job-Seq is fooled.
func pushIntoAsReply(t *testing.T, f *fleet, got *answers) {
	ctx := fleettest.Context(t, 20*time.Second)
	n := f.names
	const id = "a-target"
	if _, err := f.pubB.Complete(ctx, job(tenantB, id, "B's answer under A's request ID")); err != nil {
		t.Fatal(err)
	}
	r, prompt := f.held(t, f.pubA, tenantA, id)
	first := untilType(t, r, protocol.EventChunk)
	raw, err := f.connect(t, "tenant-"+tenantA).SubscribeSync(n.Reply(tenantA, id))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"stream_name": n.RepliesStream(), "config": map[string]any{
		"name": "inject", "filter_subject": n.ReplyWrite(tenantB, id), "deliver_subject": n.Reply(tenantA, id),
		"ack_policy": "none", "deliver_policy": "all"}})
	api := f.envs["tenant-"+tenantB].NATSAPI
	msg, err := f.connect(t, "tenant-"+tenantB).RequestWithContext(ctx,
		api+".CONSUMER.CREATE."+n.RepliesStream()+".inject."+n.ReplyWrite(tenantB, id), body)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(msg.Data), `"deliver_subject":"`+n.Reply(tenantA, id)+`"`) {
		t.Fatalf("the push consumer was not created: %s (if nats-server now checks deliver subjects, update the README)", msg.Data)
	}
	// A's gate is still shut: a done event on A's subject now is B's.
	for {
		m, err := raw.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("B's events never reached A's reply subject (if nats-server now checks deliver subjects, update the README): %v", err)
		}
		if ev, err := protocol.DecodeEvent(m.Data); err == nil && ev.Type == protocol.EventDone {
			got.add("push consumer of B's own replies delivering on A's reply subject: created; B's events delivered there, A's publisher drops them")
			break
		}
	}
	f.gates.open(prompt)
	ans, err := r.Collect(ctx)
	if err != nil || ans.FinishReason != "stop" {
		t.Fatalf("A's reply = %+v, %v", ans, err)
	}
	if content := first.Content + ans.Content; strings.Contains(content, "under A's request ID") || content != f.answerOf(t, tenantA, id) {
		t.Fatalf("A's reply holds %q, not A's own answer", content)
	}
}

// answerOf reads a request's answer back from the replies stream, as the
// operators.
func (f *fleet) answerOf(t *testing.T, tenant, id string) string {
	t.Helper()
	ctx := fleettest.Context(t, 10*time.Second)
	r, err := f.opsPub.Attach(ctx, tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	ans, err := r.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ans.Content
}
