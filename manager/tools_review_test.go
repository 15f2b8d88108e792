package manager_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/tools/devtools"
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
