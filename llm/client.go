package llm

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/chatfleet/chatfleet/protocol"
)

// Client streams chat completions from one OpenAI-compatible upstream,
// with retries before the first delta and a circuit breaker. It is safe
// for concurrent use; make one per upstream.
type Client struct {
	cfg     Config
	oa      *openai.Client
	breaker *breaker

	calls, retries, failures, rejected atomic.Uint64

	// Seams for tests: the clock of the breaker and Retry-After dates, and
	// the retry wait.
	now  func() time.Time
	wait func(ctx context.Context, d time.Duration) error
}

// New returns a Client for cfg with its defaults filled in. The error
// wraps ErrInvalidConfig when BaseURL is not an http or https URL or a
// duration is negative.
func New(cfg Config) (*Client, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	oc := openai.DefaultConfig(cfg.APIKey)
	oc.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	oc.HTTPClient = doer{next: cfg.HTTPClient}
	return &Client{
		cfg:     cfg,
		oa:      openai.NewClientWithConfig(oc),
		breaker: newBreaker(cfg.BreakerFailures, cfg.BreakerCooldown),
		now:     time.Now,
		wait:    sleep,
	}, nil
}

// Stream starts a streaming chat completion for job. It returns once the
// upstream has answered with a stream, retrying failures (429, 5xx,
// connection errors, timeouts) up to Config.MaxRetries times with
// exponential backoff and Retry-After; Recv goes on retrying a stream that
// fails before its first delta. ctx bounds the whole stream: cancelling it
// ends the HTTP request. The error is an *Error; while the circuit breaker
// is open it wraps ErrBreakerOpen and no request is sent. The caller must
// Close the Stream.
func (c *Client) Stream(ctx context.Context, job *protocol.Job) (*Stream, error) {
	if job == nil {
		return nil, &Error{Code: protocol.CodeInvalidRequest, Message: "nil job"}
	}
	s := newStream(ctx, c, job)
	if err := s.retry(nil); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// modelsTimeout bounds Models when ctx has no deadline.
const modelsTimeout = 30 * time.Second

// Models returns the ids of the models the upstream lists (GET
// {BaseURL}/models), sorted, without retries and outside the circuit
// breaker. A ctx without a deadline is bounded to 30s. The error is an
// *Error classified like a failed stream's (a server without the
// endpoint: CodeUpstreamError with Status 404).
func (c *Client) Models(ctx context.Context) ([]string, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, modelsTimeout)
		defer cancel()
	}
	list, err := c.oa.ListModels(ctx)
	if err != nil {
		e := requestError(ctx, err)
		e.Message = c.redact(e.Message)
		return nil, e
	}
	ids := make([]string, 0, len(list.Models))
	for _, m := range list.Models {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return ids, nil
}

// Stats counts a Client's work since New, for metrics.
type Stats struct {
	// Calls is the number of HTTP requests sent to the upstream, retries
	// included.
	Calls uint64
	// Retries is the number of retries.
	Retries uint64
	// Failures is the number of attempts that failed in a way the circuit
	// breaker counts: 429, 5xx, connection errors, timeouts and streams cut
	// before their first delta.
	Failures uint64
	// Rejected is the number of attempts the open circuit breaker refused.
	Rejected uint64
	// BreakerState is BreakerClosed, BreakerOpen or BreakerHalfOpen.
	BreakerState string
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{
		Calls:        c.calls.Load(),
		Retries:      c.retries.Load(),
		Failures:     c.failures.Load(),
		Rejected:     c.rejected.Load(),
		BreakerState: c.breaker.current(c.now()),
	}
}

// resolve gives the breaker an attempt's outcome, once per attempt.
func (c *Client) resolve(a *attempt, o outcome) {
	if !a.resolved.CompareAndSwap(false, true) {
		return
	}
	if o == failed {
		c.failures.Add(1)
	}
	c.breaker.record(c.now(), a.trial, o)
}

// redact removes the API key from a message, in case an upstream echoes
// it. Short keys are left alone: replacing them would garble messages.
func (c *Client) redact(s string) string {
	if k := c.cfg.APIKey; len(k) >= 8 {
		return strings.ReplaceAll(s, k, "[redacted]")
	}
	return s
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
