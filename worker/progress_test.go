package worker_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/topology"
	"github.com/chatfleet/chatfleet/worker"
)

// TestLongJobStaysAlive: a generation that takes three times AckWait is
// kept alive by progress reports: one delivery, one upstream call.
func TestLongJobStaysAlive(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{
		LLM:      []llmtest.Option{llmtest.WithDelay(0, 300*time.Millisecond)}, // ~3s for the default answer
		Topology: topology.Config{AckWait: time.Second},
	})
	f.StartWorker(withModel)
	ctx := fleettest.Context(t, time.Minute)
	ans, err := f.Pub.Complete(ctx, userJob("take your time"))
	if err != nil {
		t.Fatal(err)
	}
	if ans.Timings.TotalMS < 3000 {
		t.Fatalf("the job took %.0fms; the test needs it to outlast AckWait (1s) three times", ans.Timings.TotalMS)
	}
	info, err := f.ConsumerInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 || f.LLM.Calls() != 1 {
		t.Errorf("redelivered %d, upstream calls %d; want 0 and 1", info.NumRedelivered, f.LLM.Calls())
	}
}

// TestChunkMerging: deltas that arrive together go out together, at
// once; deltas that trickle in within the window are merged after the
// first; with merging off every delta is its own event. The content never
// changes. The upstream holds the trickle after its first token until the
// producer has that token, and the window outlasts the test, so nothing
// depends on how fast a loaded machine reads the stream.
func TestChunkMerging(t *testing.T) {
	t.Parallel()
	tokens := make([]string, 16)
	for i := range tokens {
		tokens[i] = "tok "
	}
	want := strings.Repeat("tok ", 16)
	var mu sync.Mutex
	var firstSeen chan struct{} // closed when the producer has the first chunk
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.Reply{Tokens: tokens}
		if r.LastUserMessage() == "trickle" {
			mu.Lock()
			rep.StallAfter, rep.Release, rep.Delay = 1, firstSeen, time.Millisecond
			mu.Unlock()
		}
		return rep
	})}})
	ctx := fleettest.Context(t, time.Minute)
	chunks := func(window time.Duration, prompt string) []string {
		mu.Lock()
		firstSeen = make(chan struct{})
		release := sync.OnceFunc(func() { close(firstSeen) })
		mu.Unlock()
		defer release()
		w := f.StartWorker(func(c *worker.Config) {
			withModel(c)
			c.Manager.ChunkWindow = window
		})
		defer fleettest.StopWorker(t, w)
		job := userJob(prompt)
		job.Dedupe, job.Cache = protocol.Bool(false), protocol.Bool(false)
		r, err := f.Pub.Submit(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for ev, err := range r.Events(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			if ev.Type == protocol.EventChunk {
				out = append(out, ev.Content)
				release()
			}
		}
		if got := strings.Join(out, ""); got != want {
			t.Fatalf("window %s, %s: content %q", window, prompt, got)
		}
		return out
	}
	// A burst reaches the worker in one read or more: the first read goes
	// out at once, the rest when the stream ends.
	if got := chunks(time.Hour, "burst"); len(got) > 2 {
		t.Errorf("a burst went out as %d chunks, want 1 (or 2 if it came in two reads)", len(got))
	}
	if got := chunks(time.Hour, "trickle"); len(got) != 2 || got[0] != "tok " {
		t.Errorf("a trickle within the window went out as %q, want the first token, then the rest", got)
	}
	if got := chunks(-1, "trickle"); len(got) != 16 {
		t.Errorf("with merging off: %d chunks, want 16", len(got))
	}
}
