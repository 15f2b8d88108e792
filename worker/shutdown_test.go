package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/worker"
)

// TestStopHandsJobsBack: a worker stopped with jobs in flight and no grace
// left hands them back at once; another worker answers every one, and
// every reply ends with exactly one terminal event.
func TestStopHandsJobsBack(t *testing.T) {
	t.Parallel()
	stall := make(chan struct{})
	defer close(stall)
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.DefaultReply(r)
		if r.N <= 10 {
			rep.StallAfter, rep.Release = 2, stall // the first worker's calls never finish
		}
		return rep
	})}})
	first := f.StartWorker(withModel)
	ctx := fleettest.Context(t, time.Minute)

	var ids []string
	for i := range 10 {
		r, err := f.Pub.Submit(ctx, userJob(fmt.Sprintf("job %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		r.Stop()
		ids = append(ids, r.ID())
	}
	if err := f.LLM.WaitCalls(ctx, 10); err != nil {
		t.Fatal(err)
	}
	noGrace, cancel := context.WithCancel(context.Background())
	cancel()
	// No grace: the running jobs are handed back, and Stop says so.
	if err := first.Stop(noGrace); !errors.Is(err, worker.ErrGraceExpired) {
		t.Fatalf("stop: %v, want ErrGraceExpired", err)
	}
	f.StartWorker(withModel)

	for _, id := range ids {
		r, err := f.Pub.Attach(ctx, "default", id)
		if err != nil {
			t.Fatal(err)
		}
		terminals, resets := 0, 0
		var ans string
		for ev, err := range r.Events(ctx) {
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			switch {
			case ev.Type.Terminal():
				terminals++
				if ev.Type != protocol.EventDone {
					t.Errorf("%s ended %s: %+v", id, ev.Type, ev.Error)
				}
			case ev.Type == protocol.EventReset:
				resets++
				ans = ""
			case ev.Type == protocol.EventChunk:
				ans += ev.Content
			}
		}
		if terminals != 1 || resets != 1 {
			t.Errorf("%s: %d terminal events, %d resets; want 1 and 1", id, terminals, resets)
		}
		if !strings.HasPrefix(ans, "Simulated answer to") {
			t.Errorf("%s: answer %q", id, ans)
		}
	}
	if f.LLM.Calls() != 20 {
		t.Errorf("upstream calls = %d, want 20", f.LLM.Calls())
	}
}
