package llm

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// retry opens the stream's next connection: after prev (when not nil) it
// waits and tries again while prev is retryable and retries remain, until
// an attempt opens a stream (nil) or the last error is final.
func (s *Stream) retry(prev *Error) *Error {
	c := s.c
	hold := c.rateLimited(prev)
	for {
		if prev != nil {
			if !prev.Retryable || s.retries >= c.cfg.MaxRetries {
				return prev
			}
			d := max(c.backoff(s.retries), prev.RetryAfter, hold)
			if dl, ok := s.ctx.Deadline(); ok && time.Until(dl) < d {
				return prev // the retry could not finish in time: say why now
			}
			if err := c.wait(s.sctx, d); err != nil {
				return s.classify(err, nil)
			}
			s.retries++
			c.retries.Add(1)
		}
		err := s.open()
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrBreakerOpen) {
			if prev != nil {
				return prev // the upstream's own error says more
			}
			return err // fail fast, without waiting
		}
		prev, hold = err, c.rateLimited(err)
	}
}

// rateLimited tells OnRateLimited of a rate-limited attempt's error e and
// returns how long its answer holds calls back (0 for any other error).
func (c *Client) rateLimited(e *Error) time.Duration {
	if e == nil || e.Code != protocol.CodeRateLimited || c.cfg.OnRateLimited == nil {
		return 0
	}
	return c.cfg.OnRateLimited(e.RetryAfter)
}

// backoff returns the wait before retry n (from 0): full jitter over
// RetryBaseDelay·2ⁿ, capped at RetryMaxDelay.
func (c *Client) backoff(n int) time.Duration {
	ceil := c.cfg.RetryBaseDelay
	for i := 0; i < n && ceil < c.cfg.RetryMaxDelay; i++ {
		ceil *= 2
	}
	ceil = min(ceil, c.cfg.RetryMaxDelay)
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil + 1)
}
