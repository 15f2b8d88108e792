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
	"github.com/chatfleet/chatfleet/tools"
	"github.com/chatfleet/chatfleet/tools/devtools"
	"github.com/chatfleet/chatfleet/worker"
)

// calculatorCall: the scripted model computes 17*23 with the calculator.
func calculatorCall(string) []protocol.ToolCall {
	return []protocol.ToolCall{call("call_1", "calculator", `{"expression":"17*23"}`)}
}

// TestFleetToolLoop: the leader offers the fleet tool upstream, runs the
// model's call over NATS, continues the generation with its result, and
// the producer sees the call as tool events, not as tool_calls; the
// answer is cached as one, tool events included.
func TestFleetToolLoop(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{toolModel(calculatorCall)}})
	var calls atomic.Int64
	serveTools(t, f, counted(devtools.Calculator(), &calls), devtools.Clock())
	f.StartWorker(nil)
	ctx := ctxFor(t, time.Minute)

	r := submit(t, ctx, f.Pub, toolJob("what is 17*23?", "calculator")).wait(t)
	if r.err != nil {
		t.Fatal(describe(r))
	}
	a := r.answer
	if a.Content != "tools said: 391" || a.FinishReason != "stop" || len(a.ToolCalls) != 0 {
		t.Fatalf("answer %q finish %q tool_calls %+v", a.Content, a.FinishReason, a.ToolCalls)
	}
	if len(a.Tools) != 1 || a.Tools[0].State != protocol.ToolDone || a.Tools[0].Output != "391" ||
		a.Tools[0].Arguments != `{"expression":"17*23"}` || a.Tools[0].Round != 1 || a.Tools[0].CallID != "call_1" {
		t.Fatalf("tool events: %+v", a.Tools)
	}
	reqs := f.LLM.Requests()
	if len(reqs) != 2 || calls.Load() != 1 {
		t.Fatalf("%d upstream calls and %d tool calls, want 2 and 1", len(reqs), calls.Load())
	}
	first, second := bodyOf(t, reqs[0]), bodyOf(t, reqs[1])
	if len(first.Tools) != 1 || first.Tools[0].Function.Name != "calculator" || !strings.Contains(string(first.Tools[0].Function.Parameters), "expression") {
		t.Errorf("the first request offers %+v, want the calculator with its schema", first.Tools)
	}
	if first.Extra != nil || second.Extra != nil {
		t.Errorf("fleet_tools reached the upstream")
	}
	n := len(second.Messages)
	if n != 3 || second.Messages[1].Role != protocol.RoleAssistant || len(second.Messages[1].ToolCalls) != 1 ||
		second.Messages[2].Role != protocol.RoleTool || second.Messages[2].ToolCallID != "call_1" || second.Messages[2].Content.Text != "391" {
		t.Errorf("the second request's messages: %+v", second.Messages)
	}

	// The same job again: the cache, tools and all, and nothing called.
	c := submit(t, ctx, f.Pub, toolJob("what is 17*23?", "calculator")).wait(t)
	if c.err != nil || c.meta.Role != protocol.RoleCache || c.answer.Content != a.Content || len(c.answer.Tools) != 1 ||
		c.answer.Tools[0].Output != "391" || c.answer.Tools[0].Arguments != a.Tools[0].Arguments {
		t.Errorf("cached: %s tools %+v", describe(c), c.answer.Tools)
	}
	if f.LLM.Calls() != 2 || calls.Load() != 1 {
		t.Errorf("the cache hit called the upstream or the tool")
	}
}

// TestFleetToolsInParallelWithTimeout: two calls in one turn run at once;
// the one that outlives the tool timeout becomes an error the model reads,
// and the answer completes.
func TestFleetToolsInParallelWithTimeout(t *testing.T) {
	t.Parallel()
	both := func(string) []protocol.ToolCall {
		return []protocol.ToolCall{call("a", "stuck", `{}`), call("b", "calculator", `{"expression":"2^10"}`)}
	}
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{toolModel(both)}})
	stuck := tools.Tool{Name: "stuck", Handler: func(ctx context.Context, _ tools.Call, out *tools.Output) error {
		out.WriteString("still thinking")
		<-ctx.Done()
		return ctx.Err()
	}}
	serveTools(t, f, stuck, devtools.Calculator())
	f.StartWorker(func(c *worker.Config) { c.Manager.ToolTimeout = 300 * time.Millisecond })
	ctx := ctxFor(t, time.Minute)

	r := submit(t, ctx, f.Pub, toolJob("both", "calculator", "stuck")).wait(t)
	if r.err != nil {
		t.Fatal(describe(r))
	}
	byName := map[string]protocol.ToolEvent{}
	for _, e := range r.answer.Tools {
		byName[e.Name] = e
	}
	if s := byName["stuck"]; s.State != protocol.ToolFailed || !strings.Contains(s.Error, "did not answer within 300ms") {
		t.Errorf("the stuck call: %+v", s)
	}
	if c := byName["calculator"]; c.State != protocol.ToolDone || c.Output != "1024" {
		t.Errorf("the calculator call: %+v", c)
	}
	if want := "tools said: error: the tool did not answer within 300ms|1024"; r.answer.Content != want {
		t.Errorf("answer %q, want %q", r.answer.Content, want)
	}
}

// TestFleetToolFailures: a tool nobody serves fails the job at once with
// unknown_tool; a model that keeps calling tools ends with
// tool_rounds_exceeded.
func TestFleetToolFailures(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{toolModel(calculatorCall)}})
	serveTools(t, f, devtools.Calculator())
	f.StartWorker(func(c *worker.Config) { c.Manager.MaxToolRounds = 1 })
	ctx := ctxFor(t, time.Minute)

	r := submit(t, ctx, f.Pub, toolJob("what?", "nosuchtool")).wait(t)
	if code := jobErrorCode(r.err); code != protocol.CodeUnknownTool || f.LLM.Calls() != 0 {
		t.Errorf("unknown tool: %v after %d upstream calls", r.err, f.LLM.Calls())
	}
	// The model answers every tool result with another call.
	again := toolJob("again", "calculator")
	again.Messages = append(again.Messages, protocol.Message{Role: protocol.RoleUser, Content: protocol.TextContent("and again")})
	loop := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmScriptAlwaysCalls()}})
	serveTools(t, loop, devtools.Calculator())
	loop.StartWorker(func(c *worker.Config) { c.Manager.MaxToolRounds = 2 })
	r = submit(t, ctx, loop.Pub, again).wait(t)
	if code := jobErrorCode(r.err); code != protocol.CodeToolRounds || loop.LLM.Calls() != 3 {
		t.Errorf("endless tools: %v after %d upstream calls, want tool_rounds_exceeded after 3", r.err, loop.LLM.Calls())
	}
}

// TestTooManyToolCallsInOneTurn: a turn that calls more fleet tools than a
// turn may run gets the first ones run and, for the rest, a result that
// says so; the answer completes.
func TestTooManyToolCallsInOneTurn(t *testing.T) {
	t.Parallel()
	forty := func(string) []protocol.ToolCall {
		var cs []protocol.ToolCall
		for i := range 40 {
			cs = append(cs, call(fmt.Sprintf("c%d", i), "calculator", fmt.Sprintf(`{"expression":"%d"}`, i)))
		}
		return cs
	}
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{toolModel(forty)}})
	var calls atomic.Int64
	serveTools(t, f, counted(devtools.Calculator(), &calls))
	f.StartWorker(nil)
	r := submit(t, ctxFor(t, time.Minute), f.Pub, toolJob("many", "calculator")).wait(t)
	if r.err != nil {
		t.Fatal(describe(r))
	}
	if calls.Load() != 32 || len(r.answer.Tools) != 32 || !strings.Contains(r.answer.Content, "|error: not called: a turn may call at most 32 fleet tools") {
		t.Errorf("%d calls, %d tool events, answer %q", calls.Load(), len(r.answer.Tools), r.answer.Content)
	}
}
