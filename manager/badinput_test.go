package manager_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/protocol"
)

// TestInvalidJobsAreAnsweredAndTerminated: a bad job gets an
// invalid_request error naming the field on its derived reply subject, is
// never redelivered, and costs nothing else: a good job behind it is
// answered.
func TestInvalidJobsAreAnsweredAndTerminated(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	f.StartWorker(nil)
	nc := natstest.Connect(t, f.NATS.ClientURL())
	ctx := ctxFor(t, 30*time.Second)

	tests := []struct {
		name, subject, msgID, body string
		replyTo, field             string // "" replyTo: no reply subject can be derived
	}{
		{"not json", "chat.jobs.default", "bad-json", `{"id":`, "chat.reply.default.bad-json", ""},
		{"wrong type", "chat.jobs.default", "", `{"id":"bad-type","messages":"hi"}`, "chat.reply.default.bad-type", "messages"},
		{"version", "chat.jobs.default", "bad-v", `{"v":9,"id":"bad-v","messages":[{"role":"user","content":"x"}]}`, "chat.reply.default.bad-v", "v"},
		{"role", "chat.jobs.default", "bad-role", `{"id":"bad-role","model":"m","messages":[{"role":"boss","content":"x"}]}`, "chat.reply.default.bad-role", "messages[0].role"},
		{"tenant mismatch", "chat.jobs.acme", "bad-tenant", `{"id":"bad-tenant","model":"m","tenant":"other","messages":[{"role":"user","content":"x"}]}`, "chat.reply.acme.bad-tenant", "tenant"},
		{"no id anywhere", "chat.jobs.default", "", `{"messages":[]}`, "", "id"},
	}
	for _, tt := range tests {
		var sub *nats.Subscription
		if tt.replyTo != "" {
			var err error
			if sub, err = nc.SubscribeSync(tt.replyTo); err != nil {
				t.Fatal(err)
			}
		}
		msg := nats.NewMsg(tt.subject)
		msg.Data = []byte(tt.body)
		if tt.msgID != "" {
			msg.Header.Set(nats.MsgIdHdr, tt.msgID)
		}
		if err := nc.PublishMsg(msg); err != nil {
			t.Fatal(err)
		}
		if sub == nil {
			continue
		}
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("%s: no error event: %v", tt.name, err)
		}
		ev, err := protocol.DecodeEvent(m.Data)
		if err != nil || ev.Type != protocol.EventError || ev.Error.Code != protocol.CodeInvalidRequest || ev.Error.Field != tt.field || ev.Seq != 1 {
			t.Errorf("%s: event %s", tt.name, m.Data)
		}
		if tt.field == "tenant" && !strings.Contains(ev.Error.Message, `this error is on tenant "acme"'s reply subject chat.reply.acme.bad-tenant`) {
			t.Errorf("%s: the error does not say where it went: %q", tt.name, ev.Error.Message)
		}
	}
	// A good job after the bad ones is answered; then nothing is left
	// pending or waiting for redelivery.
	if _, err := f.Pub.Complete(ctx, userJob("still working?")); err != nil {
		t.Fatal(err)
	}
	// The bad jobs are terminated concurrently with the good one: wait
	// (with a deadline) until nothing is pending or unacked.
	f.WaitConsumer(t, ctx, "consumer settled", func(info *jetstream.ConsumerInfo) bool {
		if info.NumRedelivered != 0 {
			t.Fatalf("a bad job was redelivered")
		}
		return info.NumPending == 0 && info.NumAckPending == 0
	})
	// Each bad job is in the dead-letter stream, as published, with why.
	byBody := map[string]*jetstream.RawStreamMsg{}
	for _, d := range deadLetters(t, f) {
		byBody[string(d.Data)] = d
	}
	if len(byBody) != len(tests) {
		t.Fatalf("%d dead letters, want %d", len(byBody), len(tests))
	}
	for _, tt := range tests {
		d := byBody[tt.body]
		if d == nil || d.Header.Get(protocol.DeadLetterCode) != "invalid_request" || d.Header.Get(protocol.DeadLetterField) != tt.field ||
			d.Header.Get(protocol.DeadLetterSubject) != tt.subject || d.Header.Get(protocol.DeadLetterReason) == "" {
			t.Errorf("%s: dead letter %+v", tt.name, d)
		}
	}
}

// TestDeadLetterBeforeError: the dead letter of an invalid job is stored
// before its error event, so a producer that has seen the error finds the
// dead letter at once (dlq ls right after an invalid_request).
func TestDeadLetterBeforeError(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	f.StartWorker(nil)
	ctx := ctxFor(t, 30*time.Second)
	nc, js := natstest.JetStream(t, f.NATS.ClientURL())
	dlq, err := js.Stream(ctx, f.Topology.WithDefaults().Names.DeadLetterStream())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		job := userJob("refused")
		job.ID = fmt.Sprintf("dl-first-%d", i)
		job.Messages[0].Role = "boss" // the publisher would refuse it; publish it raw
		body, _ := json.Marshal(job)
		sub, err := nc.SubscribeSync("chat.reply.default." + job.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, "chat.jobs.default", body); err != nil {
			t.Fatal(err)
		}
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev, _ := protocol.DecodeEvent(m.Data); ev.Type != protocol.EventError {
			t.Fatalf("event %s", m.Data)
		}
		d, err := dlq.GetLastMsgForSubject(ctx, "chat.dlq.default")
		if err != nil || d.Header.Get(protocol.DeadLetterRequest) != job.ID {
			t.Fatalf("job %d: no dead letter when its error arrived: %v", i, err)
		}
		_ = sub.Unsubscribe()
	}
}
