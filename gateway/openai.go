package gateway

import "github.com/chatfleet/chatfleet/protocol"

// The OpenAI wire shapes the gateway writes.

// chunk is one chat.completion.chunk.
type chunk struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"` // "chat.completion.chunk"
	Created int64           `json:"created"`
	Model   string          `json:"model"`
	Choices []chunkChoice   `json:"choices"`
	Usage   *protocol.Usage `json:"usage,omitempty"`
}

type chunkChoice struct {
	Index        int     `json:"index"`
	Delta        delta   `json:"delta"`
	FinishReason *string `json:"finish_reason"`
}

// delta is a chunk's delta. Content is a pointer so the first chunk can
// carry "content": "" beside the role, as OpenAI's does.
type delta struct {
	Role             string              `json:"role,omitempty"`
	Content          *string             `json:"content,omitempty"`
	ToolCalls        []protocol.ToolCall `json:"tool_calls,omitempty"`
	Refusal          *string             `json:"refusal,omitempty"`
	ReasoningContent string              `json:"reasoning_content,omitempty"`
}

// completion is one chat.completion (stream: false).
type completion struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"` // "chat.completion"
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   *protocol.Usage    `json:"usage,omitempty"`
}

type completionChoice struct {
	Index        int     `json:"index"`
	Message      message `json:"message"`
	FinishReason string  `json:"finish_reason"`
}

type message struct {
	Role             string              `json:"role"`
	Content          *string             `json:"content"`
	ToolCalls        []protocol.ToolCall `json:"tool_calls,omitempty"`
	Refusal          *string             `json:"refusal"`
	ReasoningContent string              `json:"reasoning_content,omitempty"`
}

// errorBody is OpenAI's error shape.
type errorBody struct {
	Error apiError `json:"error"`
}

type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// modelList is GET /v1/models.
type modelList struct {
	Object string  `json:"object"` // "list"
	Data   []model `json:"data"`
}

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // "model"
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func ptr[T any](v T) *T { return &v }
