package llm

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// Breaker states, as Stats.BreakerState reports them.
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half-open"
)

// outcome is what an attempt says about the upstream's health.
type outcome int

const (
	// neutral: nothing (cancelled, refused locally, closed early).
	neutral outcome = iota
	// alive: the upstream answered (a delta, [DONE], or a 4xx that is
	// the request's fault).
	alive
	// failed: a retryable failure (429, 5xx, connection, timeout, cut
	// before the first delta).
	failed
)

// breaker is a consecutive-failures circuit breaker. Closed, it counts
// failed attempts; at threshold it opens and refuses every attempt for
// cooldown; then, half-open, it lets exactly one trial attempt through,
// whose success closes it and whose failure reopens it.
type breaker struct {
	threshold int // <= 0: disabled
	cooldown  time.Duration

	mu       sync.Mutex
	state    string
	failures int // consecutive, while closed
	openedAt time.Time
	trialOut bool // half-open: the trial is in flight
}

func newBreaker(threshold int, cooldown time.Duration) *breaker {
	return &breaker{threshold: threshold, cooldown: cooldown, state: BreakerClosed}
}

// allow admits an attempt; trial is true for the half-open trial. It
// returns an *Error wrapping ErrBreakerOpen when the breaker refuses.
func (b *breaker) allow(now time.Time) (trial bool, err *Error) {
	if b.threshold <= 0 {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerClosed:
		return false, nil
	case BreakerOpen:
		if wait := b.openedAt.Add(b.cooldown).Sub(now); wait > 0 {
			return false, b.refusal(wait)
		}
		b.state = BreakerHalfOpen
	}
	if b.trialOut {
		return false, b.refusal(0)
	}
	b.trialOut = true
	return true, nil
}

// refusal is the error of a refused attempt; mu is held.
func (b *breaker) refusal(wait time.Duration) *Error {
	msg := fmt.Sprintf("circuit breaker open after %d consecutive failures; not calling the upstream", b.threshold)
	if wait > 0 {
		msg += fmt.Sprintf(" for another %s", wait.Round(time.Millisecond))
	} else {
		msg += " while a trial request is in flight"
	}
	return &Error{
		Code:       protocol.CodeUpstreamUnavailable,
		Message:    msg,
		RetryAfter: wait,
		Retryable:  true,
		Err:        ErrBreakerOpen,
	}
}

// record takes an attempt's outcome.
func (b *breaker) record(now time.Time, trial bool, o outcome) {
	if b.threshold <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch o {
	case alive:
		b.state, b.failures, b.trialOut = BreakerClosed, 0, false
	case failed:
		switch {
		case b.state == BreakerClosed:
			b.failures++
			if b.failures >= b.threshold {
				b.state, b.openedAt = BreakerOpen, now
			}
		case b.state == BreakerHalfOpen && trial:
			b.state, b.openedAt, b.trialOut = BreakerOpen, now, false
		}
	case neutral:
		if trial && b.state == BreakerHalfOpen {
			b.trialOut = false // let another request be the trial
		}
	}
}

// current returns the state as callers would meet it: open turns
// half-open once its cooldown has passed.
func (b *breaker) current(now time.Time) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state == BreakerOpen && !now.Before(b.openedAt.Add(b.cooldown)) {
		return BreakerHalfOpen
	}
	return b.state
}

// outcomeOf tells what a failed attempt's error says about the upstream.
// A 4xx the upstream is not to blame for shows it alive.
func outcomeOf(e *Error) outcome {
	switch {
	case errors.Is(e.Err, ErrBreakerOpen):
		return neutral
	case e.Retryable:
		return failed
	case e.Status >= 400 && e.Status < 500:
		return alive
	default:
		return neutral
	}
}
