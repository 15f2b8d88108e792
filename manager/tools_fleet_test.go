package manager_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/tools"
	"github.com/chatfleet/chatfleet/tools/devtools"
)

// toolWatch reads a reply and keeps its tool events in order.
type toolWatch struct {
	meta   chan protocol.Event // the first meta
	events []protocol.ToolEvent
	answer *publisher.Answer
	err    error
	done   chan struct{}
}

func watchTools(ctx context.Context, r *publisher.Reply) *toolWatch {
	w := &toolWatch{meta: make(chan protocol.Event, 1), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer r.Stop()
		a := &publisher.Answer{}
		for ev, err := range r.Events(ctx) {
			if err != nil {
				w.err = err
				return
			}
			switch ev.Type {
			case protocol.EventMeta:
				select {
				case w.meta <- ev:
				default:
				}
			case protocol.EventTool:
				w.events = append(w.events, *ev.Tool)
			case protocol.EventChunk:
				a.Content += ev.Content
			case protocol.EventReset:
				a.Content, w.events = "", nil
				a.Resets++
			case protocol.EventDone:
				a.FinishReason = ev.FinishReason
				w.answer = a
				return
			case protocol.EventError, protocol.EventCancelled:
				w.err = fmt.Errorf("ended with %s: %+v", ev.Type, ev.Error)
				return
			}
		}
	}()
	return w
}

// firstMeta is the reply's meta event; a reply that ends without one (its
// context ended, or an error came first) fails the test.
func (w *toolWatch) firstMeta(t *testing.T) protocol.Event {
	t.Helper()
	select {
	case m := <-w.meta:
		return m
	case <-w.done:
		select {
		case m := <-w.meta:
			return m
		default:
		}
		t.Fatalf("the reply ended without a meta event: %v", w.err)
	}
	return protocol.Event{}
}

// reached waits until ch is closed, or fails the test when ctx ends first.
func reached(t *testing.T, ctx context.Context, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-ctx.Done():
		t.Fatalf("%s: never happened (%v)", what, ctx.Err())
	}
}

// TestStreamedToolOutputReachesRemoteFollowers: a tool's streamed output
// reaches the leader's producer and two followers on other workers, in
// order, as it is written.
func TestStreamedToolOutputReachesRemoteFollowers(t *testing.T) {
	t.Parallel()
	lines := func(string) []protocol.ToolCall { return []protocol.ToolCall{call("call_l", "lines", `{}`)} }
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{toolModel(lines)}})
	started, release := make(chan struct{}), make(chan struct{})
	serveTools(t, f, tools.Tool{Name: "lines", Handler: func(ctx context.Context, _ tools.Call, out *tools.Output) error {
		close(started)
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		for i := range 20 {
			fmt.Fprintf(out, "line %d\n", i)
		}
		return nil
	}})
	f.StartWorker(capacity(1)) // busy leading: the next jobs go to the others
	ctx := ctxFor(t, time.Minute)
	job := toolJob("stream it", "lines")
	r, err := f.Pub.Submit(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	leader := watchTools(ctx, r)
	reached(t, ctx, started, "the tool called")
	leaderMeta := leader.firstMeta(t)
	f.StartWorker(nil)
	f.StartWorker(nil)
	var followers []*toolWatch
	for range 2 {
		r, err := f.Pub.Submit(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		w := watchTools(ctx, r)
		if m := w.firstMeta(t); m.Role != protocol.RoleFollower || m.Worker == leaderMeta.Worker {
			t.Fatalf("meta %+v: want a follower on another worker than %s", m, leaderMeta.Worker)
		}
		followers = append(followers, w)
	}
	close(release)

	var want strings.Builder
	for i := range 20 {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	for i, w := range append([]*toolWatch{leader}, followers...) {
		<-w.done
		if w.err != nil {
			t.Fatalf("producer %d: %v", i, w.err)
		}
		var streamed strings.Builder
		var states []protocol.ToolState
		for _, e := range w.events {
			if e.State == protocol.ToolOutput {
				streamed.WriteString(e.Output)
			} else {
				states = append(states, e.State)
			}
		}
		if streamed.String() != want.String() || fmt.Sprint(states) != "[started done]" {
			t.Errorf("producer %d: streamed %q, states %v", i, streamed.String(), states)
		}
		if !strings.HasPrefix(w.answer.Content, "tools said: line 0") {
			t.Errorf("producer %d: answer %q", i, w.answer.Content)
		}
	}
}

// TestHerdWithToolsOneLoop: 100 identical jobs with a fleet tool cost one
// tool loop: two upstream calls (the call, the answer) and one tool call.
func TestHerdWithToolsOneLoop(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{toolModel(calculatorCall)}})
	var calls atomic.Int64
	serveTools(t, f, counted(devtools.Calculator(), &calls))
	f.StartWorker(nil)
	f.StartWorker(nil)
	ctx := ctxFor(t, 2*time.Minute)

	for _, s := range submitMany(t, ctx, f.Pub, toolJob("what is 17*23?", "calculator"), 100) {
		r := s.wait(t)
		if r.err != nil || r.answer.Content != "tools said: 391" || len(r.answer.Tools) != 1 || r.answer.Tools[0].Output != "391" {
			t.Fatalf("%s tools %+v", describe(r), r.answer)
		}
	}
	if f.LLM.Calls() != 2 || calls.Load() != 1 {
		t.Errorf("%d upstream calls and %d tool calls, want 2 and 1", f.LLM.Calls(), calls.Load())
	}
}

// TestCallerToolsPassThrough: the producer's own tools are today's
// pass-through — its calls reach the leader's producer, a follower on
// another worker and a cache hit unchanged; mixed with a fleet tool in one
// turn, the fleet's call runs and the producer's ends the generation,
// numbered from 0 as if alone.
func TestCallerToolsPassThrough(t *testing.T) {
	t.Parallel()
	weather := protocol.Tool{Type: "function", Function: protocol.FunctionSpec{Name: "get_weather", Parameters: []byte(`{"type":"object"}`)}}
	calls := func(prompt string) []protocol.ToolCall {
		if prompt == "mixed" {
			return []protocol.ToolCall{call("f", "calculator", `{"expression":"6*7"}`), call("w", "get_weather", `{"city":"Paris"}`)}
		}
		return []protocol.ToolCall{call("w", "get_weather", `{"city":"Paris"}`)}
	}
	release := make(chan struct{})
	script := toolScript(calls)
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := script(r)
		if r.N == 1 { // the leader's call waits until a follower joined
			rep.StallAfter, rep.Release = -1, release
		}
		return rep
	})}})
	serveTools(t, f, devtools.Calculator())
	f.StartWorker(capacity(1))
	ctx := ctxFor(t, time.Minute)

	job := userJob("weather?")
	job.Tools = []protocol.Tool{weather}
	leading := submit(t, ctx, f.Pub, job)
	<-leading.metaRead
	f.StartWorker(nil)
	following := submit(t, ctx, f.Pub, job)
	<-following.metaRead
	close(release)
	leader, follower := leading.wait(t), following.wait(t)
	cached := submit(t, ctx, f.Pub, job).wait(t)
	want := protocol.ToolCall{ID: "w", Type: "function", Function: protocol.FunctionCall{Name: "get_weather", Arguments: `{"city":"Paris"}`}}
	for name, r := range map[string]result{"leader": leader, "remote follower": follower, "cache": cached} {
		if r.err != nil || r.answer.FinishReason != "tool_calls" || !onlyCall(r.answer.ToolCalls, want) {
			t.Errorf("%s: %s calls %+v", name, describe(r), r.answer.ToolCalls)
		}
	}
	if follower.meta.Role != protocol.RoleFollower || follower.meta.Worker == leader.meta.Worker || cached.meta.Role != protocol.RoleCache {
		t.Errorf("roles: follower %+v, cache %+v", follower.meta, cached.meta)
	}

	mixed := toolJob("mixed", "calculator")
	mixed.Tools = []protocol.Tool{weather}
	r := submit(t, ctx, f.Pub, mixed).wait(t)
	if r.err != nil || r.answer.FinishReason != "tool_calls" || !onlyCall(r.answer.ToolCalls, want) {
		t.Errorf("mixed: %s calls %+v", describe(r), r.answer.ToolCalls)
	}
	if len(r.answer.Tools) != 1 || r.answer.Tools[0].Output != "42" {
		t.Errorf("mixed: the fleet's call %+v", r.answer.Tools)
	}
}

// onlyCall reports whether calls is want alone, at index 0.
func onlyCall(calls []protocol.ToolCall, want protocol.ToolCall) bool {
	if len(calls) != 1 || calls[0].Index == nil || *calls[0].Index != 0 {
		return false
	}
	c := calls[0]
	c.Index = nil
	return c == want
}
