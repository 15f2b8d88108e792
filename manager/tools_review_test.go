package manager_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/subjects"
	"github.com/chatfleet/chatfleet/tools"
	"github.com/chatfleet/chatfleet/tools/devtools"
	"github.com/chatfleet/chatfleet/worker"
)

// rawToolCallTurn is an SSE body whose one delta calls the calculator
// with the tool-call index index, as an upstream may send it.
func rawToolCallTurn(index int) []string {
	chunk := func(delta, finish string) string {
		return fmt.Sprintf(`data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":%s,"finish_reason":%s}]}`+"\n\n", delta, finish)
	}
	call := fmt.Sprintf(`{"role":"assistant","tool_calls":[{"index":%d,"id":"call_odd","type":"function","function":{"name":"calculator","arguments":"{\"expression\":\"17*23\"}"}}]}`, index)
	return []string{chunk(call, "null"), chunk(`{}`, `"tool_calls"`), "data: [DONE]\n\n"}
}

// TestFleetCallWithOddIndex: a fleet call whose tool-call index is
// negative or past what calls are merged at still runs, and the answer
// goes on from its result (it panicked the leader, or dropped the call
// and ended with tool_calls and no call).
func TestFleetCallWithOddIndex(t *testing.T) {
	t.Parallel()
	script := toolScript(func(string) []protocol.ToolCall { return nil })
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		b := upstreamBody{}
		_ = json.Unmarshal(r.Body, &b)
		last := b.Messages[len(b.Messages)-1]
		var index int
		if _, err := fmt.Sscanf(last.Content.Text, "index %d", &index); last.Role == protocol.RoleUser && err == nil {
			return llmtest.Reply{Raw: rawToolCallTurn(index)}
		}
		return script(r)
	})}})
	serveTools(t, f, devtools.Calculator())
	f.StartWorker(nil)
	ctx := ctxFor(t, time.Minute)
	for _, index := range []int{-1, 5000} {
		r := submit(t, ctx, f.Pub, toolJob(fmt.Sprintf("index %d", index), "calculator")).wait(t)
		if r.err != nil || r.answer.Content != "tools said: 391" || len(r.answer.Tools) != 1 || len(r.answer.ToolCalls) != 0 {
			t.Errorf("index %d: %s", index, describe(r))
		}
	}
}

// TestToolReplyCutAtTheLimit: a tool server that ignores the request's
// max_output_bytes (written in another language, or a stranger) cannot
// make the model read, or the listeners receive, more than
// MaxToolOutputBytes of its output.
func TestToolReplyCutAtTheLimit(t *testing.T) {
	t.Parallel()
	const limit = 1 << 10
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{toolModel(func(string) []protocol.ToolCall {
		return []protocol.ToolCall{call("call_big", "big", `{}`)}
	})}})
	names, err := subjects.New(subjects.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := micro.AddService(natstest.Connect(t, f.NATS.ClientURL()), micro.Config{
		Name: tools.ServiceName, Version: "1.0.0", QueueGroup: tools.ServiceName,
		Metadata: map[string]string{tools.MetadataPrefix: names.Prefix()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	big := strings.Repeat("x", 200<<10)
	if err := svc.AddEndpoint("big", micro.HandlerFunc(func(r micro.Request) {
		_ = r.RespondJSON(tools.Reply{Output: big}) // whatever max_output_bytes said
	}), micro.WithEndpointSubject(names.Tool("big")), micro.WithEndpointMetadata(map[string]string{
		tools.MetadataParameters: `{"type":"object"}`,
	})); err != nil {
		t.Fatal(err)
	}
	f.StartWorker(func(c *worker.Config) { c.Manager.MaxToolOutputBytes = limit })
	ctx := ctxFor(t, time.Minute)

	r := submit(t, ctx, f.Pub, toolJob("call big", "big")).wait(t)
	if r.err != nil || len(r.answer.Tools) != 1 {
		t.Fatalf("%s tools %d", describe(r), len(r.answer.Tools))
	}
	if got := r.answer.Tools[0]; len(got.Output) > limit || !got.Truncated {
		t.Errorf("the done event carries %d bytes of output (truncated %v), want at most %d, truncated", len(got.Output), got.Truncated, limit)
	}
	if read := strings.TrimPrefix(r.answer.Content, "tools said: "); len(read) > limit {
		t.Errorf("the model read %d bytes of the tool's output, want at most %d", len(read), limit)
	}
}

// TestAnswerCapCoversEveryTurn: CHATFLEET_MAX_ANSWER_BYTES bounds the
// whole answer, all of the tool loop's turns together: two turns of 60%
// of it each end with answer_too_large (each turn was held to the cap
// alone).
func TestAnswerCapCoversEveryTurn(t *testing.T) {
	t.Parallel()
	const limit = 4 << 10
	part := strings.Repeat("a", limit*6/10)
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		b := upstreamBody{}
		_ = json.Unmarshal(r.Body, &b)
		if b.Messages[len(b.Messages)-1].Role == protocol.RoleTool {
			return llmtest.Reply{Tokens: []string{part}}
		}
		return llmtest.Reply{Tokens: []string{part}, ToolCalls: calculatorCall("")}
	})}})
	serveTools(t, f, devtools.Calculator())
	f.StartWorker(func(c *worker.Config) { c.Manager.MaxAnswerBytes = limit })
	ctx := ctxFor(t, time.Minute)

	r := submit(t, ctx, f.Pub, toolJob("long", "calculator")).wait(t)
	if code := jobErrorCode(r.err); code != protocol.CodeAnswerTooLarge {
		got := 0
		if r.answer != nil {
			got = len(r.answer.Content)
		}
		t.Errorf("err %v, an answer of %d bytes: want %s", r.err, got, protocol.CodeAnswerTooLarge)
	}
}

// TestFleetCallWithHugeArguments: a fleet call whose arguments are larger
// than one event may carry is not run; the model reads why and answers,
// and the started event carries the arguments cut. (The started event
// carried them whole, the reply stream refused it, and the job was
// dead-lettered.)
func TestFleetCallWithHugeArguments(t *testing.T) {
	t.Parallel()
	args := `{"expression":"` + strings.Repeat("1", 1200<<10) + `"}`
	var calls atomic.Int64
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{toolModel(func(string) []protocol.ToolCall {
		return []protocol.ToolCall{call("call_huge", "calculator", args)}
	})}})
	serveTools(t, f, counted(devtools.Calculator(), &calls))
	f.StartWorker(nil)
	ctx := ctxFor(t, time.Minute)

	r := submit(t, ctx, f.Pub, toolJob("huge", "calculator")).wait(t)
	if r.err != nil || len(r.answer.Tools) != 1 {
		t.Fatalf("err %v", r.err)
	}
	got := r.answer.Tools[0]
	if got.State != protocol.ToolFailed || len(got.Arguments) >= 100<<10 || !strings.HasPrefix(r.answer.Content, "tools said: error: ") {
		t.Errorf("state %s, %d bytes of arguments, error %q, answer %.40q", got.State, len(got.Arguments), got.Error, r.answer.Content)
	}
	if calls.Load() != 0 {
		t.Errorf("the tool was called %d times", calls.Load())
	}
}

// TestToolRoundsExceededChargesTheLastTurn: a generation that ends with
// tool_rounds_exceeded counts its last turn's tokens against the
// upstream's tokens per minute too — the upstream spent them.
func TestToolRoundsExceededChargesTheLastTurn(t *testing.T) {
	t.Parallel()
	turn2, release := make(chan struct{}), make(chan struct{})
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		if r.N == 2 {
			close(turn2)
			<-release
		}
		return llmtest.Reply{ToolCalls: []protocol.ToolCall{call(fmt.Sprintf("call_%d", r.N), "calculator", `{"expression":"1+1"}`)}}
	})}})
	ctx := ctxFor(t, time.Minute)
	setUpstream(t, ctx, f, protocol.UpstreamLimits{TokensPerMinute: 1 << 30})
	top := jobs(t, f)
	serveTools(t, f, devtools.Calculator())
	f.StartWorker(func(c *worker.Config) { c.Manager.MaxToolRounds = 1 })
	freshMinute(ctx, 10*time.Second) // both turns' tokens in one minute's window
	tokens := func() int64 {
		e, err := top.Upstreams.Get(ctx, f.Topology.Names.UpstreamWindowKey(protocol.DefaultUpstream))
		if err != nil {
			return 0
		}
		var w protocol.UpstreamWindow
		_ = json.Unmarshal(e.Value(), &w)
		return w.Tokens
	}

	s := submit(t, ctx, f.Pub, toolJob("again", "calculator"))
	<-turn2
	first := tokens() // the first turn's, counted as it ended
	close(release)
	r := s.wait(t)
	if code := jobErrorCode(r.err); code != protocol.CodeToolRounds {
		t.Fatalf("%v: want %s", r.err, protocol.CodeToolRounds)
	}
	if first == 0 || tokens() <= first {
		t.Errorf("tokens counted: %d after the first turn, %d after the second", first, tokens())
	}
}
