// Package llm is chatfleet's upstream client: it streams chat completions
// for protocol jobs from an OpenAI-compatible API (OpenAI, vLLM, Ollama,
// llama.cpp) over github.com/sashabaranov/go-openai.
//
// # Streaming
//
//	c, err := llm.New(llm.Config{BaseURL: "http://localhost:8000/v1"})
//	if err != nil { ... }            // wraps llm.ErrInvalidConfig
//	s, err := c.Stream(ctx, job)      // *llm.Error on failure
//	if err != nil { ... }
//	defer s.Close()
//	for {
//		d, err := s.Recv()
//		if err == io.EOF {
//			break // the upstream sent data: [DONE]
//		}
//		if err != nil { ... }         // *llm.Error
//		publish(d.Content, d.ToolCalls, d.FinishReason, d.Usage)
//	}
//
// Every field of the job reaches the upstream, including explicit zeros
// (temperature 0) and job.Extra (vendor fields such as vLLM's top_k), which
// go-openai cannot express itself: the client rewrites the request body on
// its way out. Only model, messages, stream and stream_options cannot be
// overridden from Extra.
//
// # Dialects
//
// OpenAI-compatible servers and routers stream in dialects of their own;
// the client reads every response body through a rewriter, below
// go-openai, that takes them all (the compatibility suite in
// llm/llmtest/testdata/dialects plays each one):
//
//   - SSE comments and keep-alives (": OPENROUTER PROCESSING") and the
//     event, id and retry fields are skipped: they never end a stream.
//     They do count as activity for Config.IdleTimeout — an upstream
//     that says it is still working (a router while a reasoning model
//     thinks) is not cut off, and a retry would only pay for the thinking
//     again — so the caller's deadline (chatfleet's processing timeout)
//     is what bounds an upstream that sends keep-alives forever;
//   - LF, CRLF or CR line ends; "data:" with or without a space;
//   - "reasoning" (OpenRouter, Ollama, vLLM 0.11 on) is read as
//     "reasoning_content", Groq's x_groq.usage as the usage, and the
//     finish reasons "eos", "eos_token" and "stop_sequence" as "stop"; a
//     stream that ends with [DONE] but never sent a finish_reason finishes
//     "stop" ("tool_calls" when it called tools);
//   - an error inside a stream — an error object as a data line (OpenAI,
//     vLLM), a chunk with "error" and finish_reason "error" (OpenRouter),
//     an event named "error" — ends it with an *Error carrying the
//     provider's message and the code of the status it stands for (see
//     Error); never a finish;
//   - a server that ignores "stream": true and answers with one JSON
//     chat.completion is taken as a stream of one delta;
//   - fields of a chunk that chatfleet does not read (id, model, created,
//     system_fingerprint, logprobs, content filter results, …) are dropped
//     before decoding, unchecked: a malformed one does not end a stream.
//
// A line of the stream, or a JSON answer, longer than 16 MiB ends it with
// CodeUpstreamError. Stream.Info tells what a stream showed of its
// dialect. Config.NoStreamOptions leaves out the stream_options field
// for upstreams that refuse it (their 400 wraps ErrStreamOptionsRefused).
//
// # Failures
//
// Every error is an *Error with a protocol.Code, the upstream's HTTP status
// and message, and its Retry-After. Before the first delta the client
// retries 429, 5xx, connection errors, timeouts and broken streams with
// exponential backoff and full jitter, honouring Retry-After; after it, it
// never retries, since the caller has published part of the answer. A
// stream that ends without "data: [DONE]" is an error, not io.EOF. A stream
// that delivers nothing for Config.IdleTimeout while the caller waits is cut
// off with CodeTimeout.
//
// # Circuit breaker
//
// Each Client has a breaker for its upstream. After Config.BreakerFailures
// consecutive failed attempts it opens: Stream fails fast with an *Error
// wrapping ErrBreakerOpen, without any HTTP request. After
// Config.BreakerCooldown it lets one trial request through; the trial's
// first delta closes the breaker, its failure reopens it. A 4xx that is the
// request's fault shows the upstream alive and is not a failure.
// Client.Stats reports the breaker's state and counters.
package llm
