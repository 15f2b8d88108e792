package manager_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// storedEvents returns every event stored for tenant/id in the replies
// stream, raw.
func storedEvents(t *testing.T, f *fleettest.Fleet, tenant, id string) [][]byte {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	_, js := natstest.JetStream(t, f.NATS.ClientURL())
	names := f.Topology.WithDefaults().Names
	c, err := js.OrderedConsumer(ctx, names.RepliesStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{names.ReplyWrite(tenant, id)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		info, err := c.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 {
			return out
		}
		batch, err := c.Fetch(int(min(info.NumPending, 256)))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			out = append(out, m.Data())
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// chunkBytes counts an event's output the way the chunk cap does.
func chunkBytes(ev *protocol.Event) int {
	n := len(ev.Content) + len(ev.Refusal) + len(ev.ReasoningContent)
	for _, tc := range ev.ToolCalls {
		n += len(tc.ID) + len(tc.Type) + len(tc.Function.Name) + len(tc.Function.Arguments)
	}
	return n
}

// fastUpstream streams tokens (each shared, so the test holds little) as
// fast as the socket takes them.
func fastUpstream(tokens []string, reasoning []string) llmtest.Option {
	return llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Tokens: tokens, Reasoning: reasoning}
	})
}

func repeatToken(tok string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = tok
	}
	return out
}

// TestLargeAnswersAreCutAtTheChunkCap: an upstream that streams megabytes
// as fast as it can, in 1 KiB deltas or as one huge delta, never makes a
// stored event carry more than the chunk cap (nor exceed max_payload): the
// whole answer arrives, from one upstream call, with no redelivery; and an
// answer larger than the cache takes is streamed but not cached.
func TestLargeAnswersAreCutAtTheChunkCap(t *testing.T) {
	t.Parallel()
	kib := strings.Repeat("abcdefgh", 128)
	huge := strings.Repeat("é€", 300_000) // 1.5 MB in one delta, multi-byte
	tests := []struct {
		name              string
		tokens, reasoning []string
	}{
		{"3 MiB in 1 KiB deltas", repeatToken(kib, 3072), nil},
		{"one 1.5 MB delta", []string{huge}, []string{huge[:200_000]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{fastUpstream(tt.tokens, tt.reasoning)}})
			f.StartWorker(nil)
			ctx := ctxFor(t, 60*time.Second)
			job := userJob("a long answer, please")
			job.ID = "large-1"
			ans, err := f.Pub.Complete(ctx, job)
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.Join(tt.tokens, ""); ans.Content != want || ans.Reasoning != strings.Join(tt.reasoning, "") {
				t.Fatalf("answer of %d bytes, want %d", len(ans.Content), len(want))
			}
			const limit = 64 << 10
			maxPayload := natstest.Connect(t, f.NATS.ClientURL()).MaxPayload()
			events := storedEvents(t, f, "default", job.ID)
			for _, raw := range events {
				ev, err := protocol.DecodeEvent(raw)
				if err != nil {
					t.Fatal(err)
				}
				if n := chunkBytes(&ev); n > limit || int64(len(raw)) > maxPayload {
					t.Fatalf("event %d carries %d bytes of output (%d encoded); cap %d", ev.Seq, n, len(raw), limit)
				}
			}
			if len(events) < 4 {
				t.Errorf("only %d events", len(events))
			}
			if f.LLM.Calls() != 1 {
				t.Errorf("%d upstream calls, want 1", f.LLM.Calls())
			}
			info, err := f.ConsumerInfo(ctx)
			if err != nil || info.NumRedelivered != 0 {
				t.Errorf("redelivered: %+v, %v", info, err)
			}
			// Larger than the cache's 1 MiB: the same request leads again.
			job.ID = "large-2"
			r, err := f.Pub.Submit(ctx, job)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Stop()
			if meta, err := r.Next(ctx); err != nil || meta.Role != protocol.RoleLeader {
				t.Errorf("second request: %+v, %v; want a leader (nothing cached)", meta, err)
			}
		})
	}
}

// TestChunkCapFollowsMaxPayload: on a server with a 16 KiB max_payload the
// chunk cap shrinks so that every event still fits, and a 200 KiB answer
// streams whole.
func TestChunkCapFollowsMaxPayload(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{
		LLM:    []llmtest.Option{fastUpstream(repeatToken(strings.Repeat("<&>\x01", 256), 200), nil)},
		Server: func(o *server.Options) { o.MaxPayload = 16 << 10 },
	})
	f.StartWorker(nil)
	ctx := ctxFor(t, 30*time.Second)
	job := userJob("escape-heavy answer")
	job.ID = "small-payload"
	ans, err := f.Pub.Complete(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	if len(ans.Content) != 200*1024 {
		t.Fatalf("answer of %d bytes", len(ans.Content))
	}
	for _, raw := range storedEvents(t, f, "default", job.ID) {
		if len(raw) > 16<<10 {
			t.Fatalf("stored event of %d bytes on a 16 KiB server", len(raw))
		}
	}
}

// TestAnswerTooLarge: an answer that outgrows MaxAnswerBytes ends with
// answer_too_large, the upstream request is cancelled (the upstream sees
// its client leave while it still had more to send), and nothing is
// cached.
func TestAnswerTooLarge(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		// 100 KiB, then nothing until the client leaves.
		return llmtest.Reply{Tokens: repeatToken(strings.Repeat("z", 1024), 1000), StallAfter: 100}
	})}})
	f.StartWorker(func(c *worker.Config) { c.Manager.MaxAnswerBytes = 64 << 10 })
	ctx := ctxFor(t, 30*time.Second)
	_, err := f.Pub.Complete(ctx, userJob("never stop"))
	var jerr *publisher.JobError
	if !errors.As(err, &jerr) || jerr.Err.Code != protocol.CodeAnswerTooLarge {
		t.Fatalf("err = %v, want answer_too_large", err)
	}
	if err := f.LLM.WaitDisconnects(ctx, 1); err != nil {
		t.Fatalf("the upstream request was not cancelled: %v", err)
	}
	_, err = f.Pub.Complete(ctx, userJob("never stop"))
	if !errors.As(err, &jerr) || jerr.Err.Code != protocol.CodeAnswerTooLarge || f.LLM.Calls() != 2 {
		t.Fatalf("second: err = %v after %d calls; the error must not be cached", err, f.LLM.Calls())
	}
}

// TestRefusedReplyIsDeadLettered: when the server refuses a reply event
// for good (here: the workers may not publish to one tenant's replies),
// the job is dead-lettered and terminated at once; it is never handed
// back to call the upstream again.
func TestRefusedReplyIsDeadLettered(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{
		Topology: topology.Config{AckWait: 4 * time.Second},
		Server: func(o *server.Options) {
			o.Users = []*server.User{{Username: "fleet", Permissions: &server.Permissions{
				Publish: &server.SubjectPermission{Allow: []string{">"}, Deny: []string{"chat.write.locked.>"}},
			}}}
			o.NoAuthUser = "fleet"
		},
	})
	f.StartWorker(nil)
	ctx := ctxFor(t, 60*time.Second)
	job := userJob("refused reply")
	job.Tenant, job.ID = "locked", "refused-1"
	r, err := f.Pub.Submit(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	r.Stop() // nothing can arrive: every event is refused
	var d *jetstream.RawStreamMsg
	for d == nil {
		for _, m := range deadLetters(t, f) {
			if m.Header.Get(protocol.DeadLetterRequest) == job.ID {
				d = m
			}
		}
		if d == nil {
			select {
			case <-ctx.Done():
				t.Fatal("no dead letter")
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	if d.Header.Get(protocol.DeadLetterCode) != string(protocol.CodeInternal) || !strings.Contains(d.Header.Get(protocol.DeadLetterReason), "could not be stored") {
		t.Errorf("dead letter: %v", d.Header)
	}
	waitSettled(t, ctx, f)
	if info, _ := f.ConsumerInfo(ctx); info.NumRedelivered != 0 || f.LLM.Calls() > 1 {
		t.Errorf("redelivered %d, %d upstream calls", info.NumRedelivered, f.LLM.Calls())
	}
}

// waitSettled waits until the workers' consumer has nothing pending or
// unacknowledged.
func waitSettled(t *testing.T, ctx context.Context, f *fleettest.Fleet) {
	t.Helper()
	f.WaitConsumer(t, ctx, "consumer settled", func(info *jetstream.ConsumerInfo) bool {
		return info.NumPending == 0 && info.NumAckPending == 0
	})
}
