package manager_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/tools"
	"github.com/chatfleet/chatfleet/topology"
)

// killDuringToolCall runs a generation whose leader, a worker process,
// is SIGKILLed while the fleet tool it called runs; three followers on
// two other workers wait for the answer. It returns every producer's
// watch (the dead leader's own job last) and how often the tool ran.
func killDuringToolCall(t *testing.T, notIdempotent bool) ([]*toolWatch, int64, *fleettest.Fleet) {
	t.Helper()
	slow := func(string) []protocol.ToolCall { return []protocol.ToolCall{call("call_s", "slow", `{}`)} }
	f := fleettest.New(t, fleettest.Options{
		LLM:      []llmtest.Option{toolModel(slow)},
		Topology: topology.Config{LeaseTTL: 2 * time.Second, AckWait: 2 * time.Second},
	})
	var calls atomic.Int64
	first := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	serveTools(t, f, tools.Tool{Name: "slow", NotIdempotent: notIdempotent, Handler: func(ctx context.Context, _ tools.Call, out *tools.Output) error {
		if calls.Add(1) == 1 {
			close(first)
			select { // the caller dies meanwhile
			case <-release:
			case <-ctx.Done():
			}
			return ctx.Err()
		}
		out.WriteString("ok")
		return nil
	}})
	child, _ := startChildWorker(t, f, "doomed", "CHATFLEET_MAX_CONCURRENT_REQUESTS=1")
	ctx := ctxFor(t, 2*time.Minute)
	job := toolJob("survive a crash", "slow")
	r, err := f.Pub.Submit(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	leader := watchTools(ctx, r)
	reached(t, ctx, first, "the tool called")
	if m := leader.firstMeta(t); m.Worker != "doomed" || m.Role != protocol.RoleLeader {
		t.Fatalf("leader meta %+v", m)
	}
	f.StartWorker(nil)
	f.StartWorker(nil)
	var all []*toolWatch
	for range 3 {
		r, err := f.Pub.Submit(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		w := watchTools(ctx, r)
		if m := w.firstMeta(t); m.Role != protocol.RoleFollower {
			t.Fatalf("follower meta %+v", m)
		}
		all = append(all, w)
	}
	if err := child.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	_ = child.Wait()
	all = append(all, leader)
	for _, w := range all {
		<-w.done
	}
	return all, calls.Load(), f
}

// TestLeaderKilledDuringToolCall: the takeover generates the answer again
// from the start behind a reset, running the (idempotent) tool again, and
// every producer, the dead leader's own included, gets the whole answer.
func TestLeaderKilledDuringToolCall(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("a worker process and a lease expiry")
	}
	all, calls, f := killDuringToolCall(t, false)
	for i, w := range all {
		if w.err != nil || w.answer.Content != "tools said: ok" {
			t.Errorf("producer %d: %v %+v", i, w.err, w.answer)
			continue
		}
		started := 0
		for _, e := range w.events {
			if e.State == protocol.ToolStarted {
				started++
			}
		}
		if n := len(w.events); n == 0 || started != 1 || w.events[n-1].State != protocol.ToolDone || w.events[n-1].Output != "ok" {
			t.Errorf("producer %d: tool events %+v", i, w.events)
		}
	}
	if calls != 2 || f.LLM.Calls() != 3 {
		t.Errorf("%d tool calls and %d upstream calls, want 2 (the dead leader's, the takeover's) and 3", calls, f.LLM.Calls())
	}
}

// TestTakeoverRefusesToRepeatANonIdempotentTool: with a tool marked not
// idempotent, the takeover fails the job instead of calling it again.
func TestTakeoverRefusesToRepeatANonIdempotentTool(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("a worker process and a lease expiry")
	}
	all, calls, _ := killDuringToolCall(t, true)
	for i, w := range all {
		if w.err == nil || w.answer != nil {
			t.Errorf("producer %d: an answer %+v, want tool_not_idempotent", i, w.answer)
		} else if want := string(protocol.CodeToolNotIdempotent); !containsCode(w.err, want) {
			t.Errorf("producer %d: %v, want %s", i, w.err, want)
		}
	}
	if calls != 1 {
		t.Errorf("the tool ran %d times, want once", calls)
	}
}
