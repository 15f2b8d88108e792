package llmtest

import (
	"fmt"

	"github.com/chatfleet/chatfleet/protocol"
)

// The chat.completion.chunk wire format.
type (
	chunk struct {
		ID      string   `json:"id"`
		Object  string   `json:"object"`
		Created int64    `json:"created"`
		Model   string   `json:"model"`
		Choices []choice `json:"choices"`
		Usage   *usage   `json:"usage,omitempty"`
	}
	choice struct {
		Index        int     `json:"index"`
		Delta        delta   `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	}
	delta struct {
		Role             string          `json:"role,omitempty"`
		Content          *string         `json:"content,omitempty"`
		ToolCalls        []toolCallDelta `json:"tool_calls,omitempty"`
		Refusal          string          `json:"refusal,omitempty"`
		ReasoningContent string          `json:"reasoning_content,omitempty"`
	}
	toolCallDelta struct {
		Index    int           `json:"index"`
		ID       string        `json:"id,omitempty"`
		Type     string        `json:"type,omitempty"`
		Function functionDelta `json:"function"`
	}
	functionDelta struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments,omitempty"`
	}
	usage protocol.Usage
)

// deltas returns the reply's token deltas and its finish reason.
func (rep Reply) deltas(req Request) ([]delta, string) {
	tokens, finish := rep.Tokens, rep.FinishReason
	if tokens == nil && rep.ToolCalls == nil && rep.Refusal == nil {
		def := DefaultReply(req)
		tokens = def.Tokens
		if finish == "" {
			finish = def.FinishReason
		}
	}
	var out []delta
	for _, t := range rep.Reasoning {
		out = append(out, delta{ReasoningContent: t})
	}
	for _, t := range tokens {
		out = append(out, delta{Content: ptr(t)})
	}
	for _, t := range rep.Refusal {
		out = append(out, delta{Refusal: t})
	}
	for i, tc := range rep.ToolCalls {
		id, typ := tc.ID, tc.Type
		if id == "" {
			id = fmt.Sprintf("call_%d_%d", req.N, i)
		}
		if typ == "" {
			typ = "function"
		}
		out = append(out, delta{ToolCalls: []toolCallDelta{{
			Index: i, ID: id, Type: typ, Function: functionDelta{Name: tc.Function.Name},
		}}})
		for _, piece := range splitArguments(tc.Function.Arguments) {
			out = append(out, delta{ToolCalls: []toolCallDelta{{
				Index: i, Function: functionDelta{Arguments: piece},
			}}})
		}
	}
	if finish == "" {
		finish = "stop"
		if len(rep.ToolCalls) > 0 {
			finish = "tool_calls"
		}
	}
	return out, finish
}

// splitArguments cuts a tool call's arguments into two or three pieces at
// rune boundaries (one when it is shorter than two runes).
func splitArguments(args string) []string {
	runes := []rune(args)
	if len(runes) < 2 {
		return []string{args}
	}
	size := (len(runes) + 2) / 3
	var pieces []string
	for len(runes) > 0 {
		n := min(size, len(runes))
		pieces = append(pieces, string(runes[:n]))
		runes = runes[n:]
	}
	return pieces
}

func ptr[T any](v T) *T { return &v }
