package llmtest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestConcurrency: the server counts requests open at once, by a match on
// the request, now and at most so far.
func TestConcurrency(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	s := setup(t, WithScript(func(r Request) Reply {
		rep := DefaultReply(r)
		if strings.HasPrefix(r.LastUserMessage(), "A") {
			rep.StallAfter, rep.Release = -1, release
		}
		return rep
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	isA := func(r Request) bool { return strings.HasPrefix(r.LastUserMessage(), "A") }
	done := make(chan struct{})
	for _, p := range []string{"A1", "A2"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/chat/completions", strings.NewReader(body("m", p, false)))
		if err != nil {
			t.Fatal(err)
		}
		go func() { // ends when the stream does: after release
			defer func() { done <- struct{}{} }()
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	if err := s.WaitActive(ctx, isA, 2); err != nil {
		t.Fatal(err)
	}
	resp := post(t, ctx, s, body("m", "B1", false)) // not stalled: ends at once
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	if err := s.wait(ctx, func() bool { return s.activeLocked(nil) == 2 }); err != nil {
		t.Fatalf("B's request still open: %v", err)
	}
	if got := s.Active(isA); got != 2 {
		t.Errorf("A active = %d, want 2", got)
	}
	close(release)
	<-done
	<-done
	if err := s.wait(ctx, func() bool { return s.activeLocked(nil) == 0 }); err != nil {
		t.Fatal(err)
	}
	if got, all := s.MaxConcurrent(isA), s.MaxConcurrent(nil); got != 2 || all != 3 {
		t.Errorf("MaxConcurrent: A %d, all %d; want 2, 3", got, all)
	}
	if got := s.MaxConcurrent(func(r Request) bool { return r.LastUserMessage() == "B1" }); got != 1 {
		t.Errorf("MaxConcurrent(B) = %d, want 1", got)
	}
}
