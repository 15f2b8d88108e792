package llmtest

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/chatfleet/chatfleet/protocol"
)

// Reply scripts the server's answer to one call. The zero Reply streams the
// default answer.
type Reply struct {
	// Tokens are the content deltas, in order. When Tokens and ToolCalls
	// are both nil, the server streams DefaultReply's tokens; an empty,
	// non-nil Tokens streams no content.
	Tokens []string
	// ToolCalls are streamed after Tokens as tool-call deltas: for each
	// call, one delta with its index, ID, type and name, then its arguments
	// in two or more pieces. Each delta counts as one token for StallAfter,
	// CutAfter and the usage.
	ToolCalls []protocol.ToolCall
	// Reasoning are reasoning deltas ("reasoning_content"), streamed
	// before Tokens.
	Reasoning []string
	// Refusal are refusal deltas, streamed after Tokens; a reply with a
	// Refusal and no Tokens streams no content.
	Refusal []string
	// FinishReason is the final chunk's finish_reason. Defaults to "stop",
	// or "tool_calls" when ToolCalls is set.
	FinishReason string
	// FirstDelay is waited before the first token.
	FirstDelay time.Duration
	// Delay is waited between tokens.
	Delay time.Duration

	// Status, when not zero, answers with this HTTP status and the OpenAI
	// error JSON instead of a stream.
	Status int
	// Message is the error message sent with Status. Defaults to the
	// status text.
	Message string
	// RetryAfter is sent with Status as a Retry-After header in whole
	// seconds, rounded up. Zero sends none.
	RetryAfter time.Duration

	// StallAfter, when not zero, makes the server send nothing more after
	// this many tokens (the headers and the role chunk are sent first) until
	// Release is closed, the client goes away or the server is closed; -1
	// stalls before the first token.
	StallAfter int
	// Release ends a stall; nil stalls until the client leaves or the
	// server is closed.
	Release <-chan struct{}
	// CutAfter, when not zero, closes the connection abruptly after this
	// many tokens, without a final chunk or [DONE]; -1 cuts before the first
	// token.
	CutAfter int
	// OmitDone ends the response cleanly after the final (and usage) chunk
	// but without "data: [DONE]", as a broken proxy might.
	OmitDone bool
}

// Option configures a Server.
type Option func(*Server)

// WithScript makes f decide every call. f runs on the server's handler
// goroutines, possibly concurrently. Without it the server answers
// DefaultReply.
func WithScript(f func(r Request) Reply) Option {
	return func(s *Server) { s.script = f }
}

// WithDelay sets FirstDelay and Delay of the default script's replies; it
// has no effect together with WithScript.
func WithDelay(first, between time.Duration) Option {
	return func(s *Server) { s.first, s.between = first, between }
}

// maxEcho is how much of the last user message the default answer repeats.
const maxEcho = 60

// Answer returns the full text DefaultReply streams for r: it depends on the
// request's model and messages only.
func Answer(r Request) string {
	q := strings.Join(strings.Fields(r.LastUserMessage()), " ")
	if utf8.RuneCountInString(q) > maxEcho {
		q = string([]rune(q)[:maxEcho]) + "…"
	}
	model := r.Model()
	if model == "" {
		model = "the simulated model"
	}
	return "Simulated answer to \"" + q + "\". This is chatfleet's built-in model (" + model + ")."
}

// DefaultReply answers with Answer(r) split into word tokens, each but the
// first carrying its leading spaces, so identical requests get identical
// streams and different prompts different ones.
func DefaultReply(r Request) Reply {
	return Reply{Tokens: SplitTokens(Answer(r))}
}

// SplitTokens splits s into word tokens; every token but the first starts
// with the whitespace before its word, so the tokens concatenate to s.
func SplitTokens(s string) []string {
	var tokens []string
	start := 0
	prevSpace := false
	for i, r := range s {
		space := unicode.IsSpace(r)
		if space && !prevSpace && i > start {
			tokens = append(tokens, s[start:i])
			start = i
		}
		prevSpace = space
	}
	if start < len(s) {
		tokens = append(tokens, s[start:])
	}
	return tokens
}
