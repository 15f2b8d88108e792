package worker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/worker"
)

func userJob(prompt string) protocol.Job {
	return protocol.Job{Messages: []protocol.Message{{Role: protocol.RoleUser, Content: protocol.TextContent(prompt)}}}
}

func withModel(c *worker.Config) { c.Manager.DefaultModel = "test-model" }

// TestEndToEnd follows one job from the publisher through JetStream, a
// worker and the upstream back to the publisher, checking every event.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithDelay(0, time.Millisecond)}})
	w := f.StartWorker(func(c *worker.Config) {
		withModel(c)
		c.Manager.ChunkWindow = -1 // one event per delta, to check them all
	})
	ctx := fleettest.Context(t, 30*time.Second)

	reply, err := f.Pub.Submit(ctx, userJob("hello there"))
	if err != nil {
		t.Fatal(err)
	}
	var events []protocol.Event
	for ev, err := range reply.Events(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}

	if f.LLM.Calls() != 1 {
		t.Fatalf("upstream calls = %d, want 1", f.LLM.Calls())
	}
	req := f.LLM.Requests()[0]
	wantTokens := llmtest.SplitTokens(llmtest.Answer(req))
	if len(events) != len(wantTokens)+2 {
		t.Fatalf("got %d events, want meta + %d chunks + done: %+v", len(events), len(wantTokens), events)
	}
	for i, ev := range events {
		if ev.V != 1 || ev.ID != reply.ID() || ev.Seq != uint64(i+1) {
			t.Errorf("event %d: v=%d id=%q seq=%d", i, ev.V, ev.ID, ev.Seq)
		}
	}
	meta := events[0]
	if meta.Type != protocol.EventMeta || meta.Worker != w.ID() || meta.Role != protocol.RoleLeader || meta.Model != "test-model" {
		t.Errorf("meta = %+v", meta)
	}
	for i, tok := range wantTokens {
		if ev := events[i+1]; ev.Type != protocol.EventChunk || ev.Content != tok {
			t.Errorf("chunk %d = %+v, want content %q", i, ev, tok)
		}
	}
	done := events[len(events)-1]
	if done.Type != protocol.EventDone || done.FinishReason != "stop" || done.Cached {
		t.Errorf("done = %+v", done)
	}
	if done.Usage == nil || done.Usage.CompletionTokens != len(wantTokens) || done.Usage.TotalTokens != done.Usage.PromptTokens+done.Usage.CompletionTokens {
		t.Errorf("usage = %+v", done.Usage)
	}
	if tm := done.Timings; tm == nil || tm.TotalMS < tm.TTFTMS || tm.TTFTMS < tm.QueueMS || tm.TTFTMS == 0 {
		t.Errorf("timings = %+v", done.Timings)
	}
	if req.Model() != "test-model" || req.LastUserMessage() != "hello there" || !req.Stream() {
		t.Errorf("upstream saw model=%q prompt=%q stream=%v", req.Model(), req.LastUserMessage(), req.Stream())
	}
	if _, err := reply.Next(ctx); err == nil {
		t.Errorf("Next after the terminal event must fail")
	}
}

// TestCompleteAndAttach: Complete assembles the answer; Attach reads the
// same reply again from its first event.
func TestCompleteAndAttach(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	f.StartWorker(withModel)
	ctx := fleettest.Context(t, 30*time.Second)

	job := userJob("tell me something")
	job.ID = "fixed-id-1"
	job.Tenant = "acme"
	ans, err := f.Pub.Complete(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	want := llmtest.Answer(f.LLM.Requests()[0])
	if ans.Content != want || ans.Role != protocol.RoleLeader || ans.Tenant != "acme" || ans.ID != "fixed-id-1" {
		t.Errorf("answer = %+v, want content %q", ans, want)
	}
	again, err := f.Pub.Attach(ctx, "acme", "fixed-id-1")
	if err != nil {
		t.Fatal(err)
	}
	defer again.Stop()
	ans2, err := again.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ans2.Content != want || ans2.FinishReason != "stop" {
		t.Errorf("attached answer = %+v", ans2)
	}
}

// TestNoHoarding: two workers of capacity 4 given 9 slow jobs run 4 each
// and leave the ninth in the queue.
func TestNoHoarding(t *testing.T) {
	t.Parallel()
	stall, release := fleettest.Stalled()
	defer release()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{stall}})
	capacity4 := func(c *worker.Config) {
		withModel(c)
		c.Manager.MaxConcurrentRequests = 4
	}
	w1, w2 := f.StartWorker(capacity4), f.StartWorker(capacity4)
	ctx := fleettest.Context(t, 30*time.Second)

	replies := map[string]*publisher.Reply{} // by prompt
	for i := range 9 {
		prompt := fmt.Sprintf("slow job %d", i)
		r, err := f.Pub.Submit(ctx, userJob(prompt))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Stop()
		replies[prompt] = r
	}
	if err := f.LLM.WaitCalls(ctx, 8); err != nil {
		t.Fatalf("8 jobs should run at once: %v (calls %d)", err, f.LLM.Calls())
	}
	// The 8 running jobs announce their worker in meta.
	byWorker := map[string]int{}
	for _, req := range f.LLM.Requests() {
		ev, err := replies[req.LastUserMessage()].Next(ctx)
		if err != nil || ev.Type != protocol.EventMeta {
			t.Fatalf("meta: %+v %v", ev, err)
		}
		byWorker[ev.Worker]++
	}
	if byWorker[w1.ID()] != 4 || byWorker[w2.ID()] != 4 {
		t.Errorf("running by worker = %v, want 4 and 4", byWorker)
	}
	info, err := f.ConsumerInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 8 || info.NumPending != 1 {
		t.Errorf("consumer: ack pending %d, pending %d; want 8 and 1", info.NumAckPending, info.NumPending)
	}
	release()
	for _, r := range replies {
		if _, err := r.Collect(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if f.LLM.Calls() != 9 {
		t.Errorf("calls = %d, want 9", f.LLM.Calls())
	}
}
