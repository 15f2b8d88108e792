package llmtest

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Request is one chat-completions request the server received.
type Request struct {
	// N numbers the server's requests from 1, in arrival order.
	N int
	// Body is the raw request body.
	Body []byte
	// Header is the request's HTTP header.
	Header http.Header
}

// wireRequest is the part of a chat-completions body the server reads.
type wireRequest struct {
	Model         string        `json:"model"`
	Messages      []wireMessage `json:"messages"`
	Stream        bool          `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           int `json:"max_tokens"`
	MaxCompletionTokens int `json:"max_completion_tokens"`
	Tools               []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
	ToolChoice json.RawMessage `json:"tool_choice"`
}

type wireMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCallID string          `json:"tool_call_id"`
	ToolCalls  []struct {
		ID       string `json:"id"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tool_calls"`
}

// text returns a message's text: the string content, or its text parts
// joined by newlines.
func (m wireMessage) text() string {
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(m.Content, &parts) != nil {
		return ""
	}
	var texts []string
	for _, p := range parts {
		if p.Type == "text" {
			texts = append(texts, p.Text)
		}
	}
	return strings.Join(texts, "\n")
}

// decode parses the body; a body that is not a JSON object decodes as the
// zero wireRequest.
func (r Request) decode() wireRequest {
	var w wireRequest
	_ = json.Unmarshal(r.Body, &w)
	return w
}

// JSON decodes the body into a map of its top-level fields; nil when the
// body is not a JSON object.
func (r Request) JSON() map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(r.Body, &m) != nil {
		return nil
	}
	return m
}

// Model returns the request's "model", or "" when the body has none.
func (r Request) Model() string { return r.decode().Model }

// Stream reports whether the request asked for a stream ("stream": true).
func (r Request) Stream() bool { return r.decode().Stream }

// MaxTokens returns the request's token limit: the smaller of max_tokens
// and max_completion_tokens where set, 0 when neither is.
func (r Request) MaxTokens() int {
	w := r.decode()
	switch a, b := w.MaxTokens, w.MaxCompletionTokens; {
	case a > 0 && b > 0:
		return min(a, b)
	default:
		return max(a, b, 0)
	}
}

// IncludeUsage reports whether the request set
// stream_options.include_usage.
func (r Request) IncludeUsage() bool { return r.decode().includeUsage() }

func (w wireRequest) includeUsage() bool {
	return w.StreamOptions != nil && w.StreamOptions.IncludeUsage
}

// LastUserMessage returns the text of the last message with role "user"
// (text parts joined by newlines), or "" when there is none.
func (r Request) LastUserMessage() string {
	msgs := r.decode().Messages
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			return msgs[i].text()
		}
	}
	return ""
}

// promptWords counts the words of all messages' text, the simulated
// prompt_tokens.
func (w wireRequest) promptWords() int {
	n := 0
	for _, m := range w.Messages {
		n += len(strings.Fields(m.text()))
	}
	return n
}
