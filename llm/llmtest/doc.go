// Package llmtest is an OpenAI-compatible chat-completions server that
// streams scripted answers: a real HTTP server on 127.0.0.1 for tests, and
// chatfleet's built-in "simulated model" for dev mode. It is public on
// purpose, as net/http/httptest is: programs that embed chatfleet (see
// examples/embed) test against it too. It is no upstream for production.
//
// # Protocol
//
// The server answers POST {URL}/chat/completions with "stream": true the way
// the OpenAI API does: Content-Type text/event-stream, one
// "data: {chat.completion.chunk}" event per delta, a final chunk carrying
// finish_reason, a usage chunk (empty choices) when
// stream_options.include_usage is true, then "data: [DONE]". Errors are an
// HTTP status with the OpenAI error JSON, {"error":{"message":…,"type":…,
// "code":…}}, and an optional Retry-After header. Requests without
// "stream": true get 400.
//
// # Scripts
//
// Without options every call streams DefaultReply: a deterministic answer
// derived from the request's model and messages, cut at the request's
// max_tokens (finish_reason "length"). WithTokens sets its length and
// WithDelay its pace (dev mode's CHATFLEET_DEV_TOKENS and
// CHATFLEET_DEV_TOKEN_DELAY). WithScript decides each call instead, with
// a Reply that can delay, stall, cut the connection or fail with an HTTP
// status:
//
//	srv := llmtest.New(llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
//		if r.N == 1 {
//			return llmtest.Reply{Status: 503, Message: "overloaded"}
//		}
//		return llmtest.Reply{Tokens: []string{"Hel", "lo"}}
//	}))
//	defer srv.Close()
//	baseURL := srv.URL() // ends in /v1
//
// New listens on a free port of 127.0.0.1; Listen takes the address.
//
// # Tools
//
// WithToolUse makes the default script a model that uses the tools a
// request offers (ToolUseReply): asked "what is 17*23?" with a
// "calculator" tool, it calls calculator({"expression":"17*23"}) with
// finish_reason "tool_calls"; given the tool's result in a "tool"
// message, it answers "The calculator says 391." Dev mode's simulated
// model runs with it, so the fleet's tool loop can be tried without an
// LLM.
//
// # Observing the client
//
// Calls, Requests and Disconnects report what the server saw; WaitCalls and
// WaitDisconnects block until a count is reached, so tests wait for signals
// rather than sleeping. Active and MaxConcurrent count the requests open
// at once (now, and at most so far), for those that match a test's
// filter: how a test checks a concurrency limit at the upstream;
// WaitActive waits for a number of them.
package llmtest
