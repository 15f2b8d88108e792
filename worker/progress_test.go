package worker_test

import (
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/topology"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
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

// TestChunkMerging: deltas arriving together are merged into fewer chunk
// events (the first goes out alone, at once); the content is unchanged.
// With merging off, every delta is its own event.
func TestChunkMerging(t *testing.T) {
	t.Parallel()
	tokens := make([]string, 16)
	for i := range tokens {
		tokens[i] = "tok "
	}
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Tokens: tokens} // all at once
	})}})
	ctx := fleettest.Context(t, time.Minute)
	count := func(window time.Duration) (chunks int, content string) {
		w := f.StartWorker(func(c *worker.Config) {
			withModel(c)
			c.Manager.ChunkWindow = window
		})
		defer fleettest.StopWorker(t, w)
		job := userJob("burst")
		job.Dedupe, job.Cache = protocol.Bool(false), protocol.Bool(false)
		r, err := f.Pub.Submit(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		for ev, err := range r.Events(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			if ev.Type == protocol.EventChunk {
				chunks++
				if chunks == 1 && ev.Content != "tok " {
					t.Errorf("the first delta must go out alone, got %q", ev.Content)
				}
				content += ev.Content
			}
		}
		return chunks, content
	}
	merged, mergedContent := count(time.Second)
	separate, separateContent := count(-1)
	want := ""
	for _, tok := range tokens {
		want += tok
	}
	if mergedContent != want || separateContent != want {
		t.Fatalf("content changed: %q / %q", mergedContent, separateContent)
	}
	if separate != 16 || merged != 2 {
		t.Errorf("chunk events: %d merged, %d separate; want 2 and 16", merged, separate)
	}
}
