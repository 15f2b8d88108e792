package llmtest

import (
	"embed"
	"path"
	"strings"

	"github.com/chatfleet/chatfleet/protocol"
)

// dialectFiles are the recorded streams, one file per dialect.
//
//go:embed testdata/dialects
var dialectFiles embed.FS

// Dialect is one way an OpenAI-compatible server or router streams an
// answer, recorded as a response body written from the server's public
// documentation (and, where the documentation only names a field, from its
// source): the compatibility suite plays each one with Reply against the
// real client and through a real worker.
type Dialect struct {
	// Name is the fixture's file name without its extension, under
	// llm/llmtest/testdata/dialects.
	Name string
	// Server is the server or router it stands for.
	Server string
	// Source is the documentation it follows.
	Source string
	// Body is the response body; ContentType its Content-Type.
	Body        []byte
	ContentType string
	// Want is what chatfleet makes of it.
	Want Outcome
}

// Outcome is the answer a dialect's stream must come out as, or the error
// it must end with.
type Outcome struct {
	Content, Reasoning, Refusal string
	ToolCalls                   []protocol.ToolCall
	FinishReason                string
	Usage                       *protocol.Usage
	// Code, when set, is the error code the request ends with; Message is
	// part of its message.
	Code    protocol.Code
	Message string
}

// Reply replays the dialect's body.
func (d Dialect) Reply() Reply {
	return Reply{Raw: []string{string(d.Body)}, ContentType: d.ContentType}
}

// Dialects returns every recorded dialect, in a fixed order.
func Dialects() []Dialect {
	out := make([]Dialect, len(dialects))
	for i, d := range dialects {
		file := d.Name + ".sse"
		d.ContentType = "text/event-stream"
		if strings.HasPrefix(d.Name, "json-") {
			file, d.ContentType = d.Name+".json", "application/json"
		}
		b, err := dialectFiles.ReadFile(path.Join("testdata/dialects", file))
		if err != nil {
			panic("llmtest: dialect " + d.Name + ": " + err.Error())
		}
		d.Body = b
		out[i] = d
	}
	return out
}

func used(prompt, completion int) *protocol.Usage {
	return &protocol.Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
}

func toolCall(index int, id, name, args string) protocol.ToolCall {
	return protocol.ToolCall{Index: &index, ID: id, Type: "function", Function: protocol.FunctionCall{Name: name, Arguments: args}}
}

const (
	openAIStreaming = "https://platform.openai.com/docs/api-reference/chat-streaming"
	azureFilter     = "https://learn.microsoft.com/en-us/azure/ai-foundry/openai/concepts/content-filter"
	vllmReasoning   = "https://docs.vllm.ai/en/latest/features/reasoning_outputs.html; stream_options.continuous_usage_stats"
	ollamaOpenAI    = "https://github.com/ollama/ollama/blob/main/docs/openai.md (openai/openai.go, ToChunk)"
	openRouter      = "https://openrouter.ai/docs/api-reference/streaming; https://openrouter.ai/docs/api-reference/errors"
	sseSpec         = "https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation"
)

var dialects = []Dialect{
	{Name: "openai", Server: "OpenAI", Source: openAIStreaming + " (usage chunk with empty choices, obfuscation)",
		Want: Outcome{Content: "Hello! How can I assist you today?", FinishReason: "stop", Usage: used(9, 9)}},
	{Name: "openai-refusal", Server: "OpenAI", Source: "https://platform.openai.com/docs/guides/structured-outputs#refusals",
		Want: Outcome{Refusal: "I'm sorry, I can't help with that.", FinishReason: "stop", Usage: used(12, 10)}},
	{Name: "openai-tool-calls", Server: "OpenAI", Source: "https://platform.openai.com/docs/guides/function-calling#streaming",
		Want: Outcome{ToolCalls: []protocol.ToolCall{
			toolCall(0, "call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", `{"location":"Paris"}`),
			toolCall(1, "call_ABPqYQTuX2hW3RxfUXmIwvCG", "get_weather", `{"location":"Bogotá"}`),
		}, FinishReason: "tool_calls", Usage: used(55, 44)}},
	{Name: "openai-error", Server: "OpenAI", Source: openAIStreaming + ` (a data line with only {"error": …} mid-stream)`,
		Want: Outcome{Code: protocol.CodeUpstreamUnavailable, Message: "The server had an error while processing your request"}},
	{Name: "azure", Server: "Azure OpenAI", Source: azureFilter + " (first chunk with empty choices and prompt_filter_results)",
		Want: Outcome{Content: "Azure says hello.", FinishReason: "stop", Usage: used(11, 4)}},
	{Name: "azure-content-filter", Server: "Azure OpenAI", Source: azureFilter + ` (finish_reason "content_filter")`,
		Want: Outcome{Content: "Here is a story about", FinishReason: "content_filter", Usage: used(14, 3)}},
	{Name: "vllm", Server: "vLLM (up to 0.10: reasoning_content)", Source: vllmReasoning,
		Want: Outcome{Reasoning: "Compare 9.11 and 9.8: 9.8 is larger.", Content: "9.8 is greater than 9.11.", FinishReason: "stop", Usage: used(18, 13)}},
	{Name: "vllm-reasoning", Server: "vLLM (0.11 on: reasoning)", Source: "https://docs.vllm.ai/en/v0.11.2/features/reasoning_outputs/",
		Want: Outcome{Reasoning: "Compare 9.11 and 9.8: 9.8 is larger.", Content: "9.8 is greater than 9.11.", FinishReason: "stop", Usage: used(18, 13)}},
	{Name: "vllm-error", Server: "vLLM", Source: `vLLM's ErrorResponse ({"object":"error",…,"code":400}) as a data line`,
		Want: Outcome{Code: protocol.CodeUpstreamError, Message: "longer than the maximum model length"}},
	{Name: "ollama", Server: "Ollama", Source: ollamaOpenAI + " (reasoning, role on every chunk)",
		Want: Outcome{Reasoning: "The user greets me.", Content: "Hi there!", FinishReason: "stop", Usage: used(10, 8)}},
	{Name: "ollama-tool-calls", Server: "Ollama", Source: ollamaOpenAI + " (a whole tool call in one delta)",
		Want: Outcome{ToolCalls: []protocol.ToolCall{toolCall(0, "call_m0ymqkvc", "get_current_weather", `{"location":"Paris"}`)},
			FinishReason: "tool_calls", Usage: used(70, 20)}},
	{Name: "llamacpp", Server: "llama.cpp server", Source: "https://github.com/ggml-org/llama.cpp/tree/master/tools/server (to_json_oaicompat_chat_stream: timings, reasoning_content)",
		Want: Outcome{Reasoning: "Say hi.", Content: "Hi!", FinishReason: "stop", Usage: used(12, 6)}},
	{Name: "openrouter", Server: "OpenRouter", Source: openRouter + " (SSE comments, reasoning, reasoning_details)",
		Want: Outcome{Reasoning: "Two plus two.", Content: "2 + 2 = 4", FinishReason: "stop", Usage: used(8, 12)}},
	{Name: "openrouter-error", Server: "OpenRouter", Source: openRouter + ` (a chunk with "error" and finish_reason "error", then [DONE])`,
		Want: Outcome{Code: protocol.CodeUpstreamUnavailable, Message: "Provider disconnected unexpectedly"}},
	{Name: "groq", Server: "Groq", Source: "https://console.groq.com/docs/api-reference#chat-create (usage in x_groq.usage)",
		Want: Outcome{Content: "Hello World!", FinishReason: "stop", Usage: used(38, 4)}},
	{Name: "together", Server: "Together AI", Source: `https://docs.together.ai/reference/chat-completions-1 (usage with the last choice, finish_reason "eos")`,
		Want: Outcome{Content: "Hello from Together.", FinishReason: "stop", Usage: used(40, 4)}},
	{Name: "no-finish-reason", Server: "servers that never send finish_reason", Source: sseSpec,
		Want: Outcome{Content: "No finish reason.", FinishReason: "stop"}},
	{Name: "data-no-space", Server: `servers that send "data:" without a space`, Source: sseSpec,
		Want: Outcome{Content: "Tight framing.", FinishReason: "stop"}},
	{Name: "crlf", Server: "servers with CRLF line ends", Source: sseSpec,
		Want: Outcome{Content: "Windows line ends.", FinishReason: "stop"}},
	{Name: "event-lines", Server: "servers that send event:, id: and retry: fields", Source: sseSpec,
		Want: Outcome{Content: "Named events.", FinishReason: "stop"}},
	{Name: "keep-alives", Server: "routers that send keep-alive comments while a model thinks", Source: sseSpec + " (400 comments first)",
		Want: Outcome{Content: "Worth the wait.", FinishReason: "stop"}},
	{Name: "json-completion", Server: `servers that ignore "stream": true`, Source: "https://platform.openai.com/docs/api-reference/chat/object",
		Want: Outcome{Reasoning: "No stream today.", Content: "One piece, not streamed.", FinishReason: "stop", Usage: used(7, 5)}},
}
