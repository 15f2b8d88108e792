package llm

import (
	"bytes"
	"encoding/json"
	"fmt"

	openai "github.com/sashabaranov/go-openai"
)

var (
	keyError     = []byte(`"error"`)
	keyReasoning = []byte(`"reasoning"`)
	keyXGroq     = []byte(`"x_groq"`)
)

// rewriteChunk returns a chunk as go-openai reads it, or the error it
// carries. Most chunks need nothing and are returned as they are without
// being decoded.
func rewriteChunk(b []byte) ([]byte, error) {
	mayFail := bytes.Contains(b, keyError)
	rewrite := bytes.Contains(b, keyReasoning) || bytes.Contains(b, keyXGroq)
	if !mayFail && !rewrite {
		return b, nil
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(b, &c) != nil {
		return b, nil // not an object: go-openai reports it
	}
	if err := chunkError(c); err != nil {
		return nil, err
	}
	if !rewrite {
		return b, nil
	}
	changed := false
	if isNull(c["usage"]) {
		var x struct {
			Usage json.RawMessage `json:"usage"`
		}
		if json.Unmarshal(c["x_groq"], &x) == nil && !isNull(x.Usage) {
			c["usage"], changed = x.Usage, true
		}
	}
	if choices, ok := renameReasoning(c["choices"], "delta"); ok {
		c["choices"], changed = choices, true
	}
	if !changed {
		return b, nil
	}
	return json.Marshal(c)
}

// renameReasoning moves each choice's <key>.reasoning to
// reasoning_content, unless that is set already; ok reports a change.
func renameReasoning(raw json.RawMessage, key string) (json.RawMessage, bool) {
	var choices []map[string]json.RawMessage
	if json.Unmarshal(raw, &choices) != nil {
		return nil, false
	}
	changed := false
	for _, ch := range choices {
		var m map[string]json.RawMessage
		if json.Unmarshal(ch[key], &m) != nil {
			continue
		}
		var reasoning, content string
		if json.Unmarshal(m["reasoning"], &reasoning) != nil || reasoning == "" {
			continue
		}
		if _ = json.Unmarshal(m["reasoning_content"], &content); content != "" {
			continue
		}
		m["reasoning_content"] = m["reasoning"]
		delete(m, "reasoning")
		b, err := json.Marshal(m)
		if err != nil {
			continue
		}
		ch[key], changed = b, true
	}
	if !changed {
		return nil, false
	}
	b, err := json.Marshal(choices)
	return b, err == nil
}

// completionChunk converts a chat.completion into the one chunk that
// streams it, or returns the error the body carries.
func completionChunk(b []byte) ([]byte, error) {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotCompletion, err)
	}
	if err := chunkError(c); err != nil {
		return nil, err
	}
	choices, ok := renameReasoning(c["choices"], "message")
	if !ok {
		choices = c["choices"]
	}
	var resp struct {
		Choices []struct {
			Index        int                          `json:"index"`
			Message      openai.ChatCompletionMessage `json:"message"`
			FinishReason openai.FinishReason          `json:"finish_reason"`
		}
		Usage *openai.Usage `json:"usage"`
	}
	if json.Unmarshal(choices, &resp.Choices) != nil || len(resp.Choices) == 0 {
		return nil, fmt.Errorf("%w: no choices with a message", errNotCompletion)
	}
	if u, ok := c["usage"]; ok {
		_ = json.Unmarshal(u, &resp.Usage)
	}
	chunk := openai.ChatCompletionStreamResponse{Object: "chat.completion.chunk", Usage: resp.Usage}
	for _, ch := range resp.Choices {
		m := ch.Message
		d := openai.ChatCompletionStreamChoiceDelta{Role: m.Role, Content: m.Content, Refusal: m.Refusal, ReasoningContent: m.ReasoningContent}
		for i, tc := range m.ToolCalls {
			tc.Index = &i
			d.ToolCalls = append(d.ToolCalls, tc)
		}
		chunk.Choices = append(chunk.Choices, openai.ChatCompletionStreamChoice{Index: ch.Index, Delta: d, FinishReason: ch.FinishReason})
	}
	return json.Marshal(chunk)
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}
