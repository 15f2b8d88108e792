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
