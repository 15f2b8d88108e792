package llm

import (
	"errors"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

// breakerSetup: a client whose breaker opens after 3 failures and cools
// down for 10s on a fake clock, without retries.
func breakerSetup(t *testing.T, opts ...llmtest.Option) (*Client, *llmtest.Server, *fakeClock) {
	t.Helper()
	c, srv := setup(t, Config{MaxRetries: -1, BreakerFailures: 3, BreakerCooldown: 10 * time.Second}, opts...)
	clock := newFakeClock()
	c.now = clock.Now
	return c, srv, clock
}

func failFast(t *testing.T, c *Client, srv *llmtest.Server) {
	t.Helper()
	calls := srv.Calls()
	err := streamErr(t, c, job("x"))
	e := asError(t, err, protocol.CodeUpstreamUnavailable)
	if !errors.Is(err, ErrBreakerOpen) || !e.Retryable {
		t.Fatalf("error %+v, want the breaker's", e)
	}
	if srv.Calls() != calls {
		t.Fatalf("the open breaker let a request through")
	}
}

func TestBreakerOpensHalfOpensAndCloses(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	c, srv, clock := breakerSetup(t, script(
		llmtest.Reply{Status: 503}, llmtest.Reply{Status: 500}, llmtest.Reply{Status: 429},
		llmtest.Reply{Tokens: []string{"ok"}, StallAfter: -1, Release: release}, // the trial
	))
	for _, code := range []protocol.Code{protocol.CodeUpstreamUnavailable, protocol.CodeUpstreamUnavailable, protocol.CodeRateLimited} {
		asError(t, streamErr(t, c, job("x")), code)
	}
	if st := c.Stats(); st.BreakerState != BreakerOpen || st.Failures != 3 || srv.Calls() != 3 {
		t.Fatalf("stats %+v after %d calls", st, srv.Calls())
	}
	failFast(t, c, srv)
	clock.Advance(9 * time.Second)
	failFast(t, c, srv)
	if e := asError(t, streamErr(t, c, job("x")), protocol.CodeUpstreamUnavailable); e.RetryAfter != time.Second {
		t.Errorf("RetryAfter %s, want the rest of the cooldown", e.RetryAfter)
	}

	clock.Advance(time.Second)
	if st := c.Stats().BreakerState; st != BreakerHalfOpen {
		t.Fatalf("state %s after the cooldown", st)
	}
	trial, err := c.Stream(t.Context(), job("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer trial.Close()
	failFast(t, c, srv) // one trial at a time
	close(release)
	ds, err := collect(t, trial)
	if err != nil || content(ds) != "ok" {
		t.Fatalf("trial: %q, %v", content(ds), err)
	}
	if st := c.Stats(); st.BreakerState != BreakerClosed || st.Rejected != 4 {
		t.Errorf("stats %+v", st)
	}
	if err := streamErr(t, c, job("x")); err != nil {
		t.Errorf("after closing: %v", err)
	}
}

func TestBreakerTrialFailureReopens(t *testing.T) {
	t.Parallel()
	c, srv, clock := breakerSetup(t, llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Status: 502}
	}))
	for range 3 {
		_ = streamErr(t, c, job("x"))
	}
	failFast(t, c, srv)
	clock.Advance(10 * time.Second)
	asError(t, streamErr(t, c, job("x")), protocol.CodeUpstreamUnavailable) // the trial, a 502
	if srv.Calls() != 4 || c.Stats().BreakerState != BreakerOpen {
		t.Fatalf("%d calls, state %s", srv.Calls(), c.Stats().BreakerState)
	}
	failFast(t, c, srv)
}

func TestBreakerTrialAbandonedLetsAnotherTry(t *testing.T) {
	t.Parallel()
	c, srv, clock := breakerSetup(t, script(
		llmtest.Reply{Status: 503}, llmtest.Reply{Status: 503}, llmtest.Reply{Status: 503},
		llmtest.Reply{StallAfter: -1},
	))
	for range 3 {
		_ = streamErr(t, c, job("x"))
	}
	clock.Advance(10 * time.Second)
	trial, err := c.Stream(t.Context(), job("x"))
	if err != nil {
		t.Fatal(err)
	}
	trial.Close() // before its first delta: no verdict
	if err := streamErr(t, c, job("x")); err != nil {
		t.Fatalf("second trial: %v", err)
	}
	if st := c.Stats(); st.BreakerState != BreakerClosed || srv.Calls() != 5 {
		t.Errorf("stats %+v after %d calls", st, srv.Calls())
	}
}

func TestBreakerIgnoresClientErrors(t *testing.T) {
	t.Parallel()
	c, srv, _ := breakerSetup(t, script(
		llmtest.Reply{Status: 503}, llmtest.Reply{Status: 503},
		llmtest.Reply{Status: 400}, // alive: resets the count
		llmtest.Reply{Status: 503}, llmtest.Reply{Status: 503},
		llmtest.Reply{Status: 404}, llmtest.Reply{Status: 401}, llmtest.Reply{Status: 422},
	))
	for range 8 {
		_ = streamErr(t, c, job("x"))
	}
	if st := c.Stats(); st.BreakerState != BreakerClosed || st.Failures != 4 || srv.Calls() != 8 {
		t.Errorf("stats %+v after %d calls", st, srv.Calls())
	}
}

func TestBreakerOpensDuringRetries(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{MaxRetries: 5, BreakerFailures: 2}, llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Status: 503, Message: "down"}
	}))
	err := streamErr(t, c, job("x"))
	e := asError(t, err, protocol.CodeUpstreamUnavailable)
	if errors.Is(err, ErrBreakerOpen) || e.Status != 503 || e.Message != "down" {
		t.Errorf("error %+v, want the upstream's last error", e)
	}
	if srv.Calls() != 2 || c.Stats().BreakerState != BreakerOpen {
		t.Errorf("%d calls, stats %+v", srv.Calls(), c.Stats())
	}
}

func TestBreakerDisabled(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{MaxRetries: -1, BreakerFailures: -1}, llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Status: 503}
	}))
	for range 10 {
		_ = streamErr(t, c, job("x"))
	}
	if srv.Calls() != 10 || c.Stats().BreakerState != BreakerClosed {
		t.Errorf("%d calls, stats %+v", srv.Calls(), c.Stats())
	}
}
