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

	// KeepAlives, when not zero, sends this many SSE comment lines
	// (KeepAliveComment) before the stream's first chunk, one every
	// KeepAliveEvery, as routers do while a model thinks; -1 sends them
	// until Release is closed (then the reply streams), the client goes
	// away or the server is closed.
	KeepAlives int
	// KeepAliveEvery is the pause before each keep-alive. Defaults to 0:
	// back to back.
	KeepAliveEvery time.Duration
	// KeepAliveComment is the comment line sent. Defaults to
	// ": OPENROUTER PROCESSING".
	KeepAliveComment string

	// Raw, when not nil, is the response body instead of a scripted
	// stream: its pieces are written verbatim and flushed one by one,
	// FirstDelay before the first and Delay between the others, with
	// status 200 and ContentType. It replays recorded streams (see
	// Dialects) and malformed ones; the other fields but the delays are
	// ignored.
	Raw []string
	// ContentType is Raw's Content-Type. Defaults to "text/event-stream".
	ContentType string
}

// Option configures a Server.
type Option func(*Server)

// WithScript makes f decide every call. f runs on the server's handler
// goroutines, possibly concurrently. Without it the server answers
// DefaultReply.
func WithScript(f func(r Request) Reply) Option {
	return func(s *Server) { s.script = f }
}

// WithModels sets the models GET {URL}/models lists. Without it the
// server lists one, "llmtest" (it answers for any model); with no ids it
// answers 404, as servers without the endpoint do.
func WithModels(ids ...string) Option {
	return func(s *Server) { s.models, s.modelsSet = ids, true }
}

// WithDelay sets FirstDelay and Delay of the default script's replies; it
// has no effect together with WithScript.
func WithDelay(first, between time.Duration) Option {
	return func(s *Server) { s.first, s.between = first, between }
}

// WithTokens makes the default script answer with n tokens,
// AnswerTokens(r, n), instead of Answer(r)'s few: long enough to watch a
// stream, cancel it or ask again while it runs. n <= 0 keeps Answer's
// length. It has no effect together with WithScript.
func WithTokens(n int) Option {
	return func(s *Server) { s.tokens = n }
}

// maxEcho is how much of the last user message the default answer repeats.
const maxEcho = 60

// Answer returns the full text DefaultReply streams for r: it depends on the
// request's model, messages and token limit only.
func Answer(r Request) string { return AnswerTokens(r, 0) }

// AnswerTokens returns the text the default script of a server made with
// WithTokens(n) streams for r: the first n tokens of Answer's text
// continued by a filler sentence, ending in a period; n <= 0 means
// Answer's own length. Either is cut to the request's max_tokens (or
// max_completion_tokens).
func AnswerTokens(r Request, n int) string { return strings.Join(defaultReply(r, n).Tokens, "") }

// filler continues an answer past its natural length (WithTokens).
var filler = SplitTokens(" The simulated model keeps going, token by token, so that there is time to watch it stream, cancel it or ask the same again.")

// natural returns the answer's text before its length is adjusted.
func natural(r Request) string {
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
// streams and different prompts different ones. A reply cut at the
// request's max_tokens finishes with "length", as a model's would.
func DefaultReply(r Request) Reply { return defaultReply(r, 0) }

// defaultReply is DefaultReply with n tokens (n <= 0: the natural length).
func defaultReply(r Request, n int) Reply { return fit(SplitTokens(natural(r)), n, r.MaxTokens()) }

// fit makes an answer's tokens n long (n <= 0: as they are), ending a
// sentence, and cuts them at limit (finish_reason "length"; limit <= 0:
// none).
func fit(tokens []string, n, limit int) Reply {
	if n > 0 {
		for i := 0; len(tokens) < n; i++ {
			tokens = append(tokens, filler[i%len(filler)])
		}
		tokens = tokens[:n]
		if last := tokens[n-1]; !strings.HasSuffix(last, ".") {
			tokens[n-1] = strings.TrimRight(last, ",") + "."
		}
	}
	rep := Reply{Tokens: tokens}
	if limit > 0 && len(tokens) > limit {
		rep.Tokens, rep.FinishReason = tokens[:limit], "length"
	}
	return rep
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
