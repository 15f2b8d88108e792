package manager_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/worker"
)

// TestProgressWhileWaiting: a request waiting for the worker's only
// upstream slot tells its reader so (progress, stage waiting, reason
// llm_slot) and repeats it after every quiet ProgressInterval; a follower
// of the generation holding the slot hears its own heartbeats (stage
// generating). Once the slot frees, the answer streams and done's timings
// break the wait down.
func TestProgressWhileWaiting(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.DefaultReply(r)
		if r.LastUserMessage() == "slow" {
			rep.StallAfter, rep.Release = -1, release
		}
		return rep
	})}})
	f.StartWorker(func(c *worker.Config) {
		c.Manager.MaxConcurrentLLMStreams = 1
		c.Manager.ProgressInterval = 100 * time.Millisecond
	})
	ctx := ctxFor(t, 30*time.Second)
	var once sync.Once
	defer once.Do(func() { close(release) })

	slow := submitEvents(t, ctx, f.Pub, userJob("slow"))
	if err := f.LLM.WaitCalls(ctx, 1); err != nil { // the slot is taken
		t.Fatal(err)
	}
	follower := submitEvents(t, ctx, f.Pub, userJob("slow"))
	waiting := submitEvents(t, ctx, f.Pub, userJob("fast"))
	// Three waiting progress events, then the slot frees.
	waiting.waitFor(t, ctx, func(evs []protocol.Event) bool {
		return count(evs, progressOf(protocol.StageWaiting, protocol.ReasonLLMSlot)) >= 3
	})
	follower.waitFor(t, ctx, func(evs []protocol.Event) bool { return count(evs, progressOf(protocol.StageGenerating, "")) >= 2 })
	once.Do(func() { close(release) })

	for _, s := range []*eventLog{slow, follower, waiting} {
		evs := s.wait(t)
		if evs[0].Type != protocol.EventMeta || evs[len(evs)-1].Type != protocol.EventDone {
			t.Fatalf("events %+v", evs)
		}
		for i, ev := range evs {
			if ev.Type == protocol.EventChunk {
				for _, later := range evs[i:] {
					if later.Type == protocol.EventProgress {
						t.Errorf("a progress event after the first chunk: %+v", later)
					}
				}
				break
			}
		}
	}
	evs := waiting.wait(t)
	done := evs[len(evs)-1]
	if tm := done.Timings; tm == nil || tm.SlotWaitMS <= 0 || tm.UpstreamTTFTMS <= 0 || tm.SlotWaitMS > tm.TTFTMS {
		t.Errorf("timings %+v: want the slot wait and the upstream's own TTFT", done.Timings)
	}
	// Readers that only want the answer are not disturbed by progress.
	ans, err := f.Pub.Complete(ctx, userJob("fast"))
	if err != nil || ans.Content != llmtest.Answer(llmtest.Request{Body: []byte(`{"model":"m","messages":[{"role":"user","content":"fast"}]}`)}) {
		t.Errorf("answer %+v, %v", ans, err)
	}
}

// eventLog is every event of one reply, read in the background.
type eventLog struct {
	mu     sync.Mutex
	events []protocol.Event
	err    error
	more   chan struct{} // closed and replaced on every event
	done   chan struct{}
}

// submitEvents submits job and records its events in a goroutine the test
// owns (wait for done).
func submitEvents(t *testing.T, ctx context.Context, pub *publisher.Publisher, job protocol.Job) *eventLog {
	t.Helper()
	r, err := pub.Submit(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	l := &eventLog{more: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for ev, err := range r.Events(ctx) {
			l.mu.Lock()
			if err != nil {
				l.err = err
			} else {
				l.events = append(l.events, ev)
			}
			close(l.more)
			l.more = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	return l
}

// waitFor waits until cond holds for the events so far.
func (l *eventLog) waitFor(t *testing.T, ctx context.Context, cond func([]protocol.Event) bool) {
	t.Helper()
	for {
		l.mu.Lock()
		evs, more, err := append([]protocol.Event(nil), l.events...), l.more, l.err
		l.mu.Unlock()
		if cond(evs) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-more:
		case <-ctx.Done():
			t.Fatalf("events so far: %+v", evs)
		}
	}
}

func (l *eventLog) wait(t *testing.T) []protocol.Event {
	t.Helper()
	<-l.done
	if l.err != nil {
		t.Fatal(l.err)
	}
	return l.events
}

func progressOf(stage, reason string) func(protocol.Event) bool {
	return func(ev protocol.Event) bool {
		return ev.Type == protocol.EventProgress && ev.Stage == stage && ev.Reason == reason
	}
}

func count(evs []protocol.Event, match func(protocol.Event) bool) int {
	n := 0
	for _, ev := range evs {
		if match(ev) {
			n++
		}
	}
	return n
}

// TestCacheHitsWhileLeadersWait: with the only upstream slot held by a
// slow generation and another leader waiting for it, a request whose
// answer is cached is still pulled and answered at once: the waiting
// leader gave its request slot back (it waits in a waiting slot), so the
// worker's two request slots do not both sit behind the upstream.
func TestCacheHitsWhileLeadersWait(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.DefaultReply(r)
		if r.LastUserMessage() != "cached" {
			rep.StallAfter, rep.Release = -1, release
		}
		return rep
	})}})
	w := f.StartWorker(func(c *worker.Config) {
		c.Manager.MaxConcurrentRequests = 2
		c.Manager.MaxConcurrentLLMStreams = 1
	})
	ctx := ctxFor(t, 30*time.Second)
	var once sync.Once
	defer once.Do(func() { close(release) })
	if _, err := f.Pub.Complete(ctx, userJob("cached")); err != nil {
		t.Fatal(err)
	}
	slowA := submitEvents(t, ctx, f.Pub, userJob("slow a"))
	if err := f.LLM.WaitCalls(ctx, 2); err != nil {
		t.Fatal(err)
	}
	slowB := submitEvents(t, ctx, f.Pub, userJob("slow b"))
	slowB.waitFor(t, ctx, func(evs []protocol.Event) bool {
		return count(evs, progressOf(protocol.StageWaiting, protocol.ReasonLLMSlot)) > 0
	})
	if u := w.Manager().Slots().Usage(); u["waiting"].Used != 1 || u["requests"].Used != 1 || u["llm"].Used != 1 {
		t.Fatalf("slots %+v: want one leader streaming, one waiting without a request slot", u)
	}

	hitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ans, err := f.Pub.Complete(hitCtx, userJob("cached"))
	if err != nil || !ans.Cached {
		t.Fatalf("the cached answer waited behind the slow generations: %+v, %v", ans, err)
	}
	once.Do(func() { close(release) })
	for _, s := range []*eventLog{slowA, slowB} {
		if evs := s.wait(t); evs[len(evs)-1].Type != protocol.EventDone {
			t.Errorf("slow job ended with %+v", evs[len(evs)-1])
		}
	}
}

// TestNoProgressAfterFirstChunk: once a reader has output, it gets no
// more progress events, even when a mid-stream retry makes the
// generation wait for its upstream again.
func TestNoProgressAfterFirstChunk(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.DefaultReply(r)
		if calls.Add(1) == 1 {
			rep.CutAfter = 2 // breaks mid-answer: the worker starts it again
		} else {
			rep.FirstDelay = 4 * stageSettleForTests
		}
		return rep
	})}})
	f.StartWorker(nil)
	ctx := ctxFor(t, 30*time.Second)
	evs := submitEvents(t, ctx, f.Pub, userJob("breaks once")).wait(t)
	seenChunk, resets := false, 0
	for _, ev := range evs {
		switch {
		case ev.Type == protocol.EventChunk:
			seenChunk = true
		case ev.Type == protocol.EventReset:
			resets++
		case seenChunk && ev.Type == protocol.EventProgress:
			t.Fatalf("progress after the first chunk: %+v", evs)
		}
	}
	if resets != 1 || calls.Load() != 2 {
		t.Fatalf("%d resets, %d calls: the test needs one mid-stream retry", resets, calls.Load())
	}
}

// stageSettleForTests is how long a stage holds before a progress event
// says so (the manager's stageSettle).
const stageSettleForTests = 100 * time.Millisecond
