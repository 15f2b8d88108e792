package llm

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/chatfleet/chatfleet/protocol"
)

// errIdle cancels an attempt whose upstream went silent for IdleTimeout.
var errIdle = errors.New("llm: upstream idle")

// errNoDone replaces the io.EOF of a stream body that ends without
// "data: [DONE]": go-openai would report such a cut-off stream as a clean
// io.EOF.
var errNoDone = errors.New("llm: stream ended without data: [DONE]")

// attemptKey carries an *attempt in a request context to doer.
type attemptKey struct{}

// attempt is one HTTP request to the upstream. Its fields are used by one
// goroutine at a time (Client.Stream, then Stream.Recv, with doer and body
// running inside their calls); Stream.Close from another goroutine only
// calls end and resolve, which are safe for that.
type attempt struct {
	job   *protocol.Job
	now   func() time.Time
	calls *atomic.Uint64
	ctx   context.Context // the request's context; its cause tells an idle cut-off
	trial bool            // the breaker's half-open trial
	info  *StreamInfo     // the stream's, filled in as its body is read

	// Set by doer.
	sent       bool          // the request went to the HTTP client
	doErr      error         // the HTTP client's error
	status     int           // the response status
	retryAfter time.Duration // the response's Retry-After

	// The idle watch: timer cancels ctx with errIdle unless reset.
	idle     time.Duration
	timer    *time.Timer
	watching bool

	os       *openai.ChatCompletionStream // once open
	body     *body                        // the response body, set by doer
	done     atomic.Bool                  // the stream ended with [DONE]; read by end, which may run beside Recv
	resolved atomic.Bool                  // the breaker has the outcome
	endOnce  sync.Once
	cancel   context.CancelCauseFunc
}

// newAttempt starts an attempt under parent, with the idle watch running.
func (c *Client) newAttempt(parent context.Context, job *protocol.Job, trial bool, info *StreamInfo) *attempt {
	ctx, cancel := context.WithCancelCause(parent)
	a := &attempt{
		job: job, now: c.now, calls: &c.calls, trial: trial, info: info,
		idle: c.cfg.IdleTimeout, cancel: cancel, watching: true,
	}
	a.ctx = context.WithValue(ctx, attemptKey{}, a)
	a.timer = time.AfterFunc(a.idle, func() { cancel(errIdle) })
	return a
}

// watch restarts the idle timer: the caller is waiting for the upstream.
func (a *attempt) watch() {
	a.watching = true
	a.timer.Reset(a.idle)
}

// unwatch stops the idle timer: the caller is not waiting, so a slow
// caller is not blamed on the upstream.
func (a *attempt) unwatch() {
	a.watching = false
	a.timer.Stop()
}

// touch notes that the upstream delivered bytes.
func (a *attempt) touch() {
	if a.watching {
		a.timer.Reset(a.idle)
	}
}

// end releases the attempt: its timer, context and response body. Safe
// to call more than once and concurrently with a Recv on the attempt,
// which it interrupts.
func (a *attempt) end() {
	a.endOnce.Do(func() {
		a.timer.Stop()
		if a.done.Load() && a.body != nil {
			a.drain()
		}
		a.cancel(context.Canceled)
		if a.os != nil {
			_ = a.os.Close()
		}
	})
}

// drain reads what follows [DONE] (normally just the end of the chunked
// body), so the HTTP/1.1 connection goes back to the pool instead of being
// closed: thousands of streams a second would otherwise each cost a new
// connection and leave one in TIME_WAIT. It gives up after a moment.
func (a *attempt) drain() {
	stop := time.AfterFunc(time.Second, func() { a.cancel(context.Canceled) })
	defer stop.Stop()
	_, _ = io.CopyN(io.Discard, a.body.rc, 64<<10)
}

// doer is the HTTPDoer go-openai sends through. For a chat-completions
// request of an attempt it rewrites the body when the job needs it, records the outcome on the
// attempt (go-openai's errors carry no headers) and watches the body.
type doer struct {
	next *http.Client
}

// Do implements openai.HTTPDoer.
func (d doer) Do(req *http.Request) (*http.Response, error) {
	a, ok := req.Context().Value(attemptKey{}).(*attempt)
	if !ok {
		return d.next.Do(req)
	}
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/chat/completions") && req.Body != nil && needsRewrite(a.job) {
		if err := rewriteRequest(req, a.job); err != nil {
			return nil, err
		}
	}
	a.sent = true
	a.calls.Add(1)
	resp, err := d.next.Do(req)
	if err != nil {
		a.doErr = err
		return nil, err
	}
	a.status = resp.StatusCode
	ok2xx := resp.StatusCode >= 200 && resp.StatusCode < 300
	if !ok2xx {
		a.retryAfter = parseRetryAfter(resp.Header, a.now())
	}
	b := &body{rc: resp.Body, r: touching{resp.Body, a}, stream: ok2xx}
	if ok2xx {
		b.r = newDialectReader(b.r, a.info)
	}
	a.body, resp.Body = b, b
	return resp, nil
}

// rewriteRequest replaces req's body with rewriteBody's.
func rewriteRequest(req *http.Request, job *protocol.Job) error {
	b, err := io.ReadAll(req.Body)
	_ = req.Body.Close()
	if err != nil {
		return err
	}
	if b, err = rewriteBody(b, job); err != nil {
		return err
	}
	req.Body = io.NopCloser(bytes.NewReader(b))
	req.ContentLength = int64(len(b))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return nil
}

// body is a response body as go-openai reads it. Every byte that arrives
// resets the idle timer, comments and keep-alives included: an upstream
// that says it is still working is not silent, and the processing
// timeout bounds one that never finishes. A stream (a 2xx response) is
// read through a dialectReader, and its io.EOF becomes errNoDone:
// go-openai returns io.EOF itself on "data: [DONE]" without reading on,
// so an io.EOF from the body means the stream was cut short.
type body struct {
	rc     io.ReadCloser // the response's body
	r      io.Reader     // what Read reads: rc, touching, maybe rewritten
	stream bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF && b.stream {
		err = errNoDone
	}
	return n, err
}

func (b *body) Close() error { return b.rc.Close() }

// touching resets its attempt's idle timer whenever bytes arrive.
type touching struct {
	r io.Reader
	a *attempt
}

func (t touching) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.a.touch()
	}
	return n, err
}

// maxRetryAfter bounds a Retry-After so that a bogus header cannot
// overflow a Duration.
const maxRetryAfter = 24 * time.Hour

// parseRetryAfter reads retry-after-ms (OpenAI, Azure) or Retry-After in
// seconds or as an HTTP date; 0 when absent or unparsable.
func parseRetryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return seconds(ms / 1000)
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		return seconds(secs)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxRetryAfter)
	}
	return 0
}

// seconds converts a Retry-After in seconds, clamped to [0, maxRetryAfter].
func seconds(secs float64) time.Duration {
	switch {
	case !(secs > 0): // also NaN
		return 0
	case secs >= maxRetryAfter.Seconds():
		return maxRetryAfter
	default:
		return time.Duration(secs * float64(time.Second))
	}
}
