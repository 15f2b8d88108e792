package llm

import (
	"errors"
	"fmt"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// ErrBreakerOpen is the cause of the *Error, with CodeUpstreamUnavailable,
// that Client.Stream returns without calling the upstream while the
// client's circuit breaker is open.
var ErrBreakerOpen = errors.New("llm: circuit breaker open")

// ErrStreamOptionsRefused is wrapped by the *Error, with
// CodeUpstreamError, of an upstream that rejects a request (400 or 422)
// because of the "stream_options" field the client adds; set
// Config.NoStreamOptions for that upstream.
var ErrStreamOptionsRefused = errors.New("llm: the upstream refuses stream_options")

// ErrInvalidConfig is wrapped by the error New returns for a Config it
// cannot use.
var ErrInvalidConfig = errors.New("llm: invalid config")

// Error is every failure of Client.Stream and Stream.Recv, classified with a
// stable chatfleet code:
//
//   - CodeRateLimited: the upstream answered 429.
//   - CodeUpstreamUnavailable: 5xx, connection refused or reset, DNS
//     failure, or the circuit breaker is open (Err is ErrBreakerOpen).
//   - CodeUpstreamError: any other 4xx (one caused by stream_options wraps
//     ErrStreamOptionsRefused), a malformed stream, or a stream that broke
//     off before "data: [DONE]".
//   - An error the upstream sends inside its stream (an error object, an
//     "error" event, finish_reason "error") gets the code of the status it
//     stands for: CodeRateLimited for 429 or a rate_limit code,
//     CodeUpstreamUnavailable for 5xx or a server error, CodeTimeout for
//     408, CodeUpstreamError otherwise; its message is the provider's.
//   - CodeTimeout: the upstream went silent for Config.IdleTimeout, a
//     transport timeout, or ctx's deadline passed.
//   - CodeInvalidRequest: go-openai refused the request before sending it
//     (for example max_tokens for an o1 model).
//   - CodeInternal: ctx was cancelled (Err is context.Canceled) or the
//     stream was used after Close. Callers should test
//     errors.Is(err, context.Canceled) before looking at Code.
//
// Neither Message nor Error() ever contains the API key.
type Error struct {
	// Code classifies the failure.
	Code protocol.Code
	// Status is the upstream's HTTP status; 0 if there was no response.
	Status int
	// Message is the upstream's error message (from the OpenAI error JSON
	// when there is one) or a description of the failure.
	Message string
	// RetryAfter is the wait the upstream asked for in Retry-After (seconds
	// or an HTTP date); for an open breaker, the rest of its cooldown. 0 if
	// none.
	RetryAfter time.Duration
	// Retryable reports a failure that a later attempt may not meet: 429,
	// 5xx, connection errors, an open breaker, and timeouts, broken
	// streams and in-stream errors that stand for those before the first
	// delta. The client has already retried it up
	// to Config.MaxRetries times; after the first delta it never retries.
	Retryable bool
	// Err is the underlying error.
	Err error
}

// Error returns "llm: CODE (HTTP STATUS): MESSAGE".
func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("llm: %s (HTTP %d): %s", e.Code, e.Status, e.Message)
	}
	return fmt.Sprintf("llm: %s: %s", e.Code, e.Message)
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Refused reports an error the same request would meet again: the
// upstream refused it (a 4xx status other than 408 and 429, or an error in
// its stream that stands for one, such as a moderation flag or a prompt
// too long), as opposed to a failure of the moment. A caller that
// restarts a stream broken after partial output should not restart
// these.
func (e *Error) Refused() bool {
	var in *upstreamError
	if errors.As(e.Err, &in) {
		return e.Code == protocol.CodeUpstreamError && !in.bare
	}
	return e.Status >= 400 && e.Status < 500 && e.Code == protocol.CodeUpstreamError
}

// Protocol returns e as the error of a chatfleet error event.
func (e *Error) Protocol() *protocol.Error {
	return &protocol.Error{Code: e.Code, Message: e.Message, Status: e.Status}
}
