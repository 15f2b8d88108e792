package llm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

func TestNonRetryableStatus(t *testing.T) {
	t.Parallel()
	for _, status := range []int{400, 401, 403, 404, 422} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			msg := fmt.Sprintf("upstream says no (%d)", status)
			c, srv := setup(t, Config{}, llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
				return llmtest.Reply{Status: status, Message: msg}
			}))
			e := asError(t, streamErr(t, c, job("x")), protocol.CodeUpstreamError)
			if e.Status != status || e.Message != msg || e.Retryable || e.RetryAfter != 0 {
				t.Errorf("error %+v", e)
			}
			if !strings.Contains(e.Error(), msg) || !strings.Contains(e.Error(), fmt.Sprint(status)) {
				t.Errorf("Error() = %q", e.Error())
			}
			if srv.Calls() != 1 || c.Stats().Retries != 0 {
				t.Errorf("%d calls: a %d was retried", srv.Calls(), status)
			}
			if pe := e.Protocol(); pe.Code != protocol.CodeUpstreamError || pe.Status != status || pe.Message != msg {
				t.Errorf("Protocol() = %+v", pe)
			}
		})
	}
}

func TestRateLimitedHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{MaxRetries: 2}, llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Status: 429, Message: "Rate limit reached", RetryAfter: time.Second}
	}))
	waits := recordWaits(c)
	e := asError(t, streamErr(t, c, job("x")), protocol.CodeRateLimited)
	if e.Status != 429 || e.Message != "Rate limit reached" || e.RetryAfter != time.Second || !e.Retryable {
		t.Errorf("error %+v", e)
	}
	if srv.Calls() != 3 {
		t.Errorf("%d calls, want 1 + 2 retries", srv.Calls())
	}
	w := waits()
	if len(w) != 2 {
		t.Fatalf("waits %v", w)
	}
	for _, d := range w {
		if d < time.Second {
			t.Errorf("waited %s, less than Retry-After", d)
		}
	}
}

func TestRetryAfterBeyondDeadlineGivesUp(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{}, llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Status: 429, RetryAfter: time.Hour}
	}))
	waits := recordWaits(c)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := c.Stream(ctx, job("x"))
	if e := asError(t, err, protocol.CodeRateLimited); e.RetryAfter != time.Hour {
		t.Errorf("error %+v", e)
	}
	if srv.Calls() != 1 || len(waits()) != 0 {
		t.Errorf("%d calls, waits %v: should give up at once", srv.Calls(), waits())
	}
}

func TestServerErrorsRetried(t *testing.T) {
	t.Parallel()
	for _, status := range []int{500, 502, 503} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			c, srv := setup(t, Config{MaxRetries: 2}, llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
				return llmtest.Reply{Status: status, Message: "overloaded"}
			}))
			e := asError(t, streamErr(t, c, job("x")), protocol.CodeUpstreamUnavailable)
			if e.Status != status || e.Message != "overloaded" || !e.Retryable {
				t.Errorf("error %+v", e)
			}
			if st := c.Stats(); srv.Calls() != 3 || st.Calls != 3 || st.Retries != 2 || st.Failures != 3 {
				t.Errorf("%d server calls, stats %+v", srv.Calls(), st)
			}
		})
	}
}

func TestTransientFailureThenSuccess(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{}, script(
		llmtest.Reply{Status: 503},
		llmtest.Reply{Status: 429},
	))
	ds, err := run(t, c, job("x"))
	if err != nil {
		t.Fatal(err)
	}
	if content(ds) != llmtest.Answer(srv.Requests()[2]) {
		t.Errorf("content %q", content(ds))
	}
	if st := c.Stats(); st.Calls != 3 || st.Retries != 2 || st.BreakerState != BreakerClosed {
		t.Errorf("stats %+v", st)
	}
}

func TestConnectionRefused(t *testing.T) {
	t.Parallel()
	srv := llmtest.New()
	url := srv.URL()
	srv.Close() // nothing listens there now
	c, err := New(Config{BaseURL: url, MaxRetries: 1, RetryBaseDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := asError(t, streamErr(t, c, job("x")), protocol.CodeUpstreamUnavailable)
	if e.Status != 0 || !e.Retryable || !strings.Contains(e.Message, "refused") {
		t.Errorf("error %+v", e)
	}
	if st := c.Stats(); st.Calls != 2 || st.Retries != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestAPIKeyNeverInErrors(t *testing.T) {
	t.Parallel()
	const key = "sk-chatfleet-TOPSECRET-9f8e7d6c5b4a"
	leaks := func(t *testing.T, err error) {
		t.Helper()
		for _, s := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
			if strings.Contains(s, "TOPSECRET") {
				t.Errorf("key leaked: %s", s)
			}
		}
	}

	// A 401 whose body echoes nothing, then connection refused: the whole
	// error chain is clean.
	c, srv := setup(t, Config{APIKey: key, MaxRetries: -1}, llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Status: http.StatusUnauthorized, Message: "Incorrect API key provided."}
	}))
	err := streamErr(t, c, job("x"))
	if e := asError(t, err, protocol.CodeUpstreamError); e.Status != 401 || e.Retryable || e.Message != "Incorrect API key provided." {
		t.Errorf("401: %+v", e)
	}
	if got := srv.Requests()[0].Header.Get("Authorization"); got != "Bearer "+key {
		t.Fatalf("Authorization %q", got)
	}
	for u := err; u != nil; u = errors.Unwrap(u) {
		leaks(t, u)
	}
	srv.Close()
	err = streamErr(t, c, job("x"))
	asError(t, err, protocol.CodeUpstreamUnavailable)
	for u := err; u != nil; u = errors.Unwrap(u) {
		leaks(t, u)
	}

	// An upstream that echoes the key: Message and Error() are redacted.
	c, _ = setup(t, Config{APIKey: key, MaxRetries: -1}, llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Status: 500, Message: "bad key " + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")}
	}))
	err = streamErr(t, c, job("x"))
	if e := asError(t, err, protocol.CodeUpstreamUnavailable); e.Message != "bad key [redacted]" {
		t.Errorf("message %q", e.Message)
	}
	leaks(t, err)
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		h    http.Header
		want time.Duration
	}{
		{"none", http.Header{}, 0},
		{"seconds", http.Header{"Retry-After": {"3"}}, 3 * time.Second},
		{"fraction", http.Header{"Retry-After": {"0.5"}}, 500 * time.Millisecond},
		{"date", http.Header{"Retry-After": {now.Add(7 * time.Second).Format(http.TimeFormat)}}, 7 * time.Second},
		{"past date", http.Header{"Retry-After": {now.Add(-time.Hour).Format(http.TimeFormat)}}, 0},
		{"negative", http.Header{"Retry-After": {"-5"}}, 0},
		{"garbage", http.Header{"Retry-After": {"soon"}}, 0},
		{"huge", http.Header{"Retry-After": {"1e300"}}, maxRetryAfter},
		{"ms wins", http.Header{"Retry-After": {"3"}, "Retry-After-Ms": {"250"}}, 250 * time.Millisecond},
		{"bad ms", http.Header{"Retry-After": {"3"}, "Retry-After-Ms": {"x"}}, 3 * time.Second},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.h, now); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
}
