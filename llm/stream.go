package llm

import (
	"context"
	"errors"
	"io"
	"sync"

	openai "github.com/sashabaranov/go-openai"

	"github.com/chatfleet/chatfleet/protocol"
)

// errClosed ends a stream used after Close.
var errClosed = errors.New("llm: stream closed")

// errFinished releases a stream that returned its last result.
var errFinished = errors.New("llm: stream finished")

// Delta is one piece of a streamed answer.
type Delta struct {
	// Content is a text delta.
	Content string
	// ToolCalls are tool-call deltas, with Index set: the first delta of a
	// call carries its ID, type and name, later ones pieces of Arguments to
	// concatenate.
	ToolCalls []protocol.ToolCall
	// Refusal is a refusal delta: the model declines to answer.
	Refusal string
	// ReasoningContent is a reasoning delta ("reasoning_content").
	ReasoningContent string
	// FinishReason is set on the delta that carries it ("stop", "length",
	// "tool_calls", "content_filter", or what else the upstream sends).
	// Synonyms some servers use for a natural end ("eos", "eos_token",
	// "stop_sequence") read "stop". A stream that ends with [DONE]
	// without any finish_reason gets a last delta with "tool_calls" when
	// it called tools, "stop" otherwise.
	FinishReason string
	// Usage is set on the usage delta, usually the last.
	Usage *protocol.Usage
}

// Stream is one streaming chat completion. Recv is for one goroutine;
// Close may be called from any goroutine, also during Recv.
type Stream struct {
	c    *Client
	ctx  context.Context // the caller's
	sctx context.Context // ends with the stream
	stop context.CancelCauseFunc
	job  *protocol.Job
	req  openai.ChatCompletionRequest

	// Used by the goroutine in Stream or Recv only.
	started  bool  // a delta was returned
	finished bool  // a delta with a finish reason was returned
	called   bool  // a tool-call delta was returned
	retries  int   // retries so far
	err      error // the final result, returned again by later calls
	info     StreamInfo

	mu     sync.Mutex
	cur    *attempt // the open attempt
	closed bool
}

func newStream(ctx context.Context, c *Client, job *protocol.Job) *Stream {
	sctx, stop := context.WithCancelCause(ctx)
	req := buildRequest(job)
	if c.cfg.NoStreamOptions {
		req.StreamOptions = nil
	}
	return &Stream{c: c, ctx: ctx, sctx: sctx, stop: stop, job: job, req: req}
}

// Info reports what the stream has shown of its upstream's dialect so
// far. Call it from the goroutine that calls Recv.
func (s *Stream) Info() StreamInfo { return s.info }

// Recv returns the next delta. After the last delta, once the upstream has
// sent "data: [DONE]", it returns io.EOF; any other error is an *Error, and
// a stream that ends without [DONE] is one (CodeUpstreamError). Until the
// first delta, failures are retried as in Client.Stream; after it Recv
// never retries. If the upstream sends nothing for Config.IdleTimeout
// while Recv waits, the error has CodeTimeout. When the Stream's ctx is
// cancelled the error satisfies errors.Is(err, context.Canceled). Once Recv
// has returned an error it returns the same error again.
func (s *Stream) Recv() (Delta, error) {
	if s.err != nil {
		return Delta{}, s.err
	}
	for {
		s.mu.Lock()
		a, closed := s.cur, s.closed
		s.mu.Unlock()
		if closed || a == nil {
			return s.finish(s.classify(errClosed, nil))
		}
		a.watch()
		resp, err := a.os.Recv()
		a.unwatch()
		if err == nil {
			d, ok := toDelta(resp)
			if !ok {
				continue // e.g. the role-only first chunk
			}
			if !s.started {
				s.started = true
				s.c.resolve(a, alive)
			}
			s.finished = s.finished || d.FinishReason != ""
			s.called = s.called || len(d.ToolCalls) > 0
			return d, nil
		}
		if err == io.EOF { // only on [DONE]; see body
			a.done.Store(true)
			s.c.resolve(a, alive)
			_, eof := s.finish(io.EOF)
			if s.finished {
				return Delta{}, eof
			}
			// The upstream never said why it stopped: the answer is whole
			// ([DONE]), so it stopped on its own.
			s.finished, s.info.NoFinishReason = true, true
			d := Delta{FinishReason: "stop"}
			if s.called {
				d.FinishReason = "tool_calls"
			}
			return d, nil
		}
		e := s.classify(err, a)
		s.c.resolve(a, outcomeOf(e))
		s.drop(a)
		if !s.started && e.Retryable {
			if e = s.retry(e); e == nil {
				continue
			}
		}
		return s.finish(e)
	}
}

// Close ends the stream and releases its HTTP request and body. It is safe
// to call more than once, and returns nil.
func (s *Stream) Close() error {
	s.mu.Lock()
	a := s.cur
	s.cur, s.closed = nil, true
	s.mu.Unlock()
	s.stop(errClosed)
	if a != nil {
		s.c.resolve(a, neutral)
		a.end()
	}
	return nil
}

// open makes one attempt, admitted by the breaker, and makes it current
// when it opens a stream.
func (s *Stream) open() *Error {
	trial, refused := s.c.breaker.allow(s.c.now())
	if refused != nil {
		s.c.rejected.Add(1)
		return refused
	}
	a := s.c.newAttempt(s.sctx, s.job, trial, &s.info)
	os, err := s.c.oa.CreateChatCompletionStream(a.ctx, s.req)
	a.unwatch()
	if err != nil {
		e := s.classify(err, a)
		s.c.resolve(a, outcomeOf(e))
		a.end()
		return e
	}
	a.os = os
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.cur = a
	}
	s.mu.Unlock()
	if closed {
		s.c.resolve(a, neutral)
		a.end()
		return s.classify(errClosed, nil)
	}
	return nil
}

// drop ends a failed attempt.
func (s *Stream) drop(a *attempt) {
	s.mu.Lock()
	if s.cur == a {
		s.cur = nil
	}
	s.mu.Unlock()
	a.end()
}

// finish records the stream's final result and releases its resources.
func (s *Stream) finish(err error) (Delta, error) {
	s.err = err
	s.mu.Lock()
	a := s.cur
	s.cur = nil
	s.mu.Unlock()
	if a != nil {
		s.c.resolve(a, neutral)
		a.end() // before stop: a clean end drains the body under a live request
	}
	s.stop(errFinished)
	return Delta{}, err
}

// toDelta converts a chunk's first choice (chatfleet jobs have n=1) and
// usage; ok is false for a chunk that carries none of Delta's fields.
func toDelta(r openai.ChatCompletionStreamResponse) (d Delta, ok bool) {
	for _, ch := range r.Choices {
		if ch.Index != 0 {
			continue
		}
		d.Content += ch.Delta.Content
		d.Refusal += ch.Delta.Refusal
		d.ReasoningContent += ch.Delta.ReasoningContent
		for i, tc := range ch.Delta.ToolCalls {
			idx := i
			if tc.Index != nil {
				idx = *tc.Index
			}
			d.ToolCalls = append(d.ToolCalls, protocol.ToolCall{
				Index: &idx,
				ID:    tc.ID,
				Type:  string(tc.Type),
				Function: protocol.FunctionCall{
					Name:      tc.Function.Name,
					Arguments: tc.Function.Arguments,
				},
			})
		}
		if fr := ch.FinishReason; fr != "" && fr != openai.FinishReasonNull {
			d.FinishReason = finishReason(string(fr))
		}
	}
	if u := r.Usage; u != nil {
		d.Usage = &protocol.Usage{
			PromptTokens:     u.PromptTokens,
			CompletionTokens: u.CompletionTokens,
			TotalTokens:      u.TotalTokens,
		}
	}
	ok = d.hasText() || len(d.ToolCalls) > 0 || d.FinishReason != "" || d.Usage != nil
	return d, ok
}

// hasText reports whether the delta carries content, a refusal or
// reasoning.
func (d *Delta) hasText() bool {
	return d.Content != "" || d.Refusal != "" || d.ReasoningContent != ""
}

// HasOutput reports whether the delta carries anything of the answer
// itself: text, a refusal, reasoning or tool calls.
func (d *Delta) HasOutput() bool { return d.hasText() || len(d.ToolCalls) > 0 }

// finishReason reads the finish reasons some servers use for a natural
// end as OpenAI's "stop": Together's "eos", Hugging Face TGI's
// "eos_token" and "stop_sequence".
func finishReason(fr string) string {
	switch fr {
	case "eos", "eos_token", "stop_sequence":
		return "stop"
	default:
		return fr
	}
}
