package llmtest

import (
	"errors"
	"io"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"
)

// toolTurn is one streamed answer as go-openai reads it.
type toolTurn struct {
	content string
	calls   []openai.ToolCall
	finish  openai.FinishReason
}

// ask streams one chat completion from s through go-openai.
func ask(t *testing.T, s *Server, req openai.ChatCompletionRequest) toolTurn {
	t.Helper()
	cfg := openai.DefaultConfig("unused")
	cfg.BaseURL = s.URL()
	req.Stream = true
	stream, err := openai.NewClientWithConfig(cfg).CreateChatCompletionStream(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var turn toolTurn
	var content strings.Builder
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range resp.Choices {
			content.WriteString(c.Delta.Content)
			for _, d := range c.Delta.ToolCalls {
				i := *d.Index
				for len(turn.calls) <= i {
					turn.calls = append(turn.calls, openai.ToolCall{})
				}
				tc := &turn.calls[i]
				if d.ID != "" {
					tc.ID, tc.Type = d.ID, d.Type
				}
				tc.Function.Name += d.Function.Name
				tc.Function.Arguments += d.Function.Arguments
			}
			if c.FinishReason != "" {
				turn.finish = c.FinishReason
			}
		}
	}
	turn.content = content.String()
	return turn
}

func offer(names ...string) []openai.Tool {
	var out []openai.Tool
	for _, n := range names {
		out = append(out, openai.Tool{Type: openai.ToolTypeFunction, Function: &openai.FunctionDefinition{Name: n, Parameters: map[string]any{"type": "object"}}})
	}
	return out
}

func user(text string) openai.ChatCompletionMessage {
	return openai.ChatCompletionMessage{Role: openai.ChatMessageRoleUser, Content: text}
}

// TestToolUseLoop: with WithToolUse the simulated model calls the
// calculator with the expression of the question, then answers with the
// tool's result, as the fleet's tool loop needs.
func TestToolUseLoop(t *testing.T) {
	t.Parallel()
	s := setup(t, WithToolUse())
	q := []openai.ChatCompletionMessage{user("what is 17*23?")}
	first := ask(t, s, openai.ChatCompletionRequest{Model: "m", Messages: q, Tools: offer("clock", "calculator")})
	if first.finish != openai.FinishReasonToolCalls || len(first.calls) != 1 || first.content != "" {
		t.Fatalf("first turn: %+v, want one tool call and finish_reason tool_calls", first)
	}
	call := first.calls[0]
	if call.ID == "" || call.Type != openai.ToolTypeFunction || call.Function.Name != "calculator" || call.Function.Arguments != `{"expression":"17*23"}` {
		t.Fatalf("tool call %+v, want calculator({\"expression\":\"17*23\"}) with an ID", call)
	}
	q = append(q,
		openai.ChatCompletionMessage{Role: openai.ChatMessageRoleAssistant, ToolCalls: first.calls},
		openai.ChatCompletionMessage{Role: openai.ChatMessageRoleTool, ToolCallID: call.ID, Content: "391"})
	second := ask(t, s, openai.ChatCompletionRequest{Model: "m", Messages: q, Tools: offer("clock", "calculator")})
	if second.finish != openai.FinishReasonStop || len(second.calls) != 0 || second.content != "The calculator says 391." {
		t.Fatalf("second turn: %+v, want \"The calculator says 391.\"", second)
	}
}

// TestToolUseChoice: which tool the simulated model calls, with what,
// and when it calls none.
func TestToolUseChoice(t *testing.T) {
	t.Parallel()
	s := setup(t, WithToolUse())
	for _, tc := range []struct {
		name, prompt string
		tools        []string
		choice       any
		want         string // name(arguments); "" for no call
	}{
		{"named tool", "ask the clock what time it is", []string{"calculator", "clock"}, nil, "clock({})"},
		{"expression", "and (2+3) * 4 ?", []string{"clock", "calculator"}, nil, `calculator({"expression":"(2+3) * 4"})`},
		{"first offered", "hello", []string{"weather", "clock"}, nil, "weather({})"},
		{"calculator with nothing to compute", "hello", []string{"calculator"}, nil, ""},
		{"tool_choice none", "what is 1+1", []string{"calculator"}, "none", ""},
		{"no tools", "what is 1+1", nil, nil, ""},
	} {
		turn := ask(t, s, openai.ChatCompletionRequest{Model: "m", Messages: []openai.ChatCompletionMessage{user(tc.prompt)}, Tools: offer(tc.tools...), ToolChoice: tc.choice})
		got := ""
		if len(turn.calls) == 1 {
			got = turn.calls[0].Function.Name + "(" + turn.calls[0].Function.Arguments + ")"
		}
		if got != tc.want || len(turn.calls) > 1 {
			t.Errorf("%s: calls %+v, want %s", tc.name, turn.calls, tc.want)
		}
		if tc.want == "" && (turn.finish != openai.FinishReasonStop || !strings.HasPrefix(turn.content, "Simulated answer")) {
			t.Errorf("%s: %+v, want the default answer", tc.name, turn)
		}
	}
}

// TestToolUseParallelResults: tool results of parallel calls are all
// read back, each under its tool's name.
func TestToolUseParallelResults(t *testing.T) {
	t.Parallel()
	s := setup(t, WithToolUse())
	calls := []openai.ToolCall{
		{ID: "a", Type: openai.ToolTypeFunction, Function: openai.FunctionCall{Name: "clock", Arguments: "{}"}},
		{ID: "b", Type: openai.ToolTypeFunction, Function: openai.FunctionCall{Name: "calculator", Arguments: `{"expression":"1+1"}`}},
	}
	q := []openai.ChatCompletionMessage{user("time and 1+1?"),
		{Role: openai.ChatMessageRoleAssistant, ToolCalls: calls},
		{Role: openai.ChatMessageRoleTool, ToolCallID: "a", Content: "2026-11-30T14:00:00Z"},
		{Role: openai.ChatMessageRoleTool, ToolCallID: "b", Content: "2"}}
	turn := ask(t, s, openai.ChatCompletionRequest{Model: "m", Messages: q, Tools: offer("clock", "calculator")})
	if want := "The clock says 2026-11-30T14:00:00Z. The calculator says 2."; turn.content != want {
		t.Errorf("answer %q, want %q", turn.content, want)
	}
}

// TestWithoutToolUse: without the option the default script ignores the
// tools offered.
func TestWithoutToolUse(t *testing.T) {
	t.Parallel()
	s := setup(t)
	turn := ask(t, s, openai.ChatCompletionRequest{Model: "m", Messages: []openai.ChatCompletionMessage{user("what is 17*23?")}, Tools: offer("calculator")})
	if len(turn.calls) != 0 || turn.content != Answer(s.Requests()[0]) {
		t.Errorf("%+v, want the default answer", turn)
	}
}

func TestExpression(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"what is 17*23?":          "17*23",
		"compute -(4 + 2)^2 now":  "-(4 + 2)^2",
		"1.5 / 3 or 2+2+2":        "1.5 / 3",
		"year 2026, nothing else": "",
		"-5":                      "",
		"what is 17 * 23.":        "17 * 23",
	} {
		if got := Expression(in); got != want {
			t.Errorf("Expression(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzExpression: whatever the message, the expression found is a piece
// of it with a digit, or nothing.
func FuzzExpression(f *testing.F) {
	for _, s := range []string{"what is 17*23?", "((", "-(-(-1", "1+", "日本 3*4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := Expression(s)
		if e != "" && (!strings.Contains(s, e) || !strings.ContainsAny(e, "0123456789")) {
			t.Errorf("Expression(%q) = %q", s, e)
		}
	})
}
