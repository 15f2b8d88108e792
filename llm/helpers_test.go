package llm

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

// setup starts an llmtest server with opts and a Client for it. Zero
// fields of cfg get fast test values: millisecond retry delays and a 10s
// idle timeout.
func setup(t *testing.T, cfg Config, opts ...llmtest.Option) (*Client, *llmtest.Server) {
	t.Helper()
	srv := llmtest.New(opts...)
	t.Cleanup(srv.Close)
	if cfg.BaseURL == "" {
		cfg.BaseURL = srv.URL()
	}
	if cfg.RetryBaseDelay == 0 {
		cfg.RetryBaseDelay = time.Millisecond
	}
	if cfg.RetryMaxDelay == 0 {
		cfg.RetryMaxDelay = 4 * time.Millisecond
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 10 * time.Second
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.cfg.HTTPClient.CloseIdleConnections) // runs before srv.Close
	return c, srv
}

// script answers call n (from 1) with replies[n-1], and the default
// reply after them.
func script(replies ...llmtest.Reply) llmtest.Option {
	return llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		if r.N <= len(replies) {
			return replies[r.N-1]
		}
		return llmtest.DefaultReply(r)
	})
}

func job(prompt string) *protocol.Job {
	return &protocol.Job{
		V: 1, ID: "r1", Tenant: "default", Model: "sim-model",
		Messages: []protocol.Message{{Role: protocol.RoleUser, Content: protocol.TextContent(prompt)}},
	}
}

// collect reads s to its end: the deltas, and the error that ended it
// (nil for io.EOF).
func collect(t *testing.T, s *Stream) ([]Delta, error) {
	t.Helper()
	var ds []Delta
	for {
		d, err := s.Recv()
		if err == io.EOF {
			return ds, nil
		}
		if err != nil {
			return ds, err
		}
		ds = append(ds, d)
	}
}

func content(ds []Delta) string {
	var b strings.Builder
	for _, d := range ds {
		b.WriteString(d.Content)
	}
	return b.String()
}

// asError asserts that err is an *Error with code.
func asError(t *testing.T, err error, code protocol.Code) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *llm.Error", err, err)
	}
	if e.Code != code {
		t.Fatalf("code = %s, want %s (error: %v)", e.Code, code, e)
	}
	return e
}

// run opens a stream for j and reads it to the end: the deltas, and the
// error from Stream or Recv (nil for io.EOF).
func run(t *testing.T, c *Client, j *protocol.Job) ([]Delta, error) {
	t.Helper()
	s, err := c.Stream(t.Context(), j)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return collect(t, s)
}

// streamErr is run's error.
func streamErr(t *testing.T, c *Client, j *protocol.Job) error {
	t.Helper()
	_, err := run(t, c, j)
	return err
}

// fakeClock is the breaker's clock in tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// recordWaits replaces c's retry wait with one that records the waits and
// returns at once.
func recordWaits(c *Client) func() []time.Duration {
	var mu sync.Mutex
	var waits []time.Duration
	c.wait = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		waits = append(waits, d)
		return ctx.Err()
	}
	return func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Duration(nil), waits...)
	}
}
