package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/gateway"
	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
)

// TestStopFinishesStreams: Stop refuses new connections at once and lets
// an open stream run to its end within the grace period.
func TestStopFinishesStreams(t *testing.T) {
	t.Parallel()
	stall, release := fleettest.Stalled()
	defer release()
	b := setup(t, fleettest.Options{LLM: []llmtest.Option{stall}}, nil)
	ctx := fleettest.Context(t, 30*time.Second)
	s := openStream(t, ctx, "POST", b.url+"/chat/completions", slowBody, http.Header{"Content-Type": {"application/json"}})
	if _, err := s.next(); err != nil { // the role chunk
		t.Fatal(err)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- b.gw.Stop(ctx) }()
	fleettest.Poll(t, ctx, "new connections refused", func() bool {
		c, err := net.Dial("tcp", b.gw.Addr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) with a stream still open", err)
	default:
	}

	release()
	var got strings.Builder
	for {
		ev, err := s.next()
		if err != nil {
			t.Fatalf("the stream broke off during the grace period: %v (so far %q)", err, got.String())
		}
		if ev.data == "[DONE]" {
			break
		}
		got.WriteString(content(t, ev))
	}
	if want := answerTo("resume me"); got.String() != want {
		t.Errorf("answer %q, want %q", got.String(), want)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// TestStopAfterGrace: when the grace period ends first, the open stream is
// closed and its request cancelled like a client that went away.
func TestStopAfterGrace(t *testing.T) {
	t.Parallel()
	stall, release := fleettest.Stalled()
	defer release()
	b := setup(t, fleettest.Options{LLM: []llmtest.Option{stall}}, func(c *gateway.Config) { c.ResumeGrace = 50 * time.Millisecond })
	ctx := fleettest.Context(t, 30*time.Second)
	s := openStream(t, ctx, "POST", b.url+"/chat/completions", slowBody, http.Header{"Content-Type": {"application/json"}})
	if _, err := s.next(); err != nil {
		t.Fatal(err)
	}
	over, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.gw.Stop(over); err == nil {
		t.Error("Stop with its grace over returned nil")
	}
	for {
		ev, err := s.next()
		if err != nil {
			break // closed, as it should be
		}
		if ev.data == "[DONE]" {
			t.Fatal("the stream completed although the upstream was stalled")
		}
	}
	if err := b.f.LLM.WaitDisconnects(ctx, 1); err != nil {
		t.Fatalf("the upstream call was not cancelled: %v", err)
	}
}

// TestRequestLimits: a body over MaxBodyBytes is refused with 413 and a
// malformed one with 400, both in OpenAI's error shape, before any job.
func TestRequestLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, fleettest.Options{}, func(c *gateway.Config) { c.MaxBodyBytes = 1000 })
	ctx := fleettest.Context(t, 30*time.Second)
	big := `{"model":"` + testModel + `","messages":[{"role":"user","content":"` + strings.Repeat("x", 2000) + `"}]}`
	for _, tc := range []struct {
		body        string
		status      int
		code, param string
		inMessage   string
	}{
		{big, http.StatusRequestEntityTooLarge, "request_too_large", "", "1000 bytes"},
		{`{"model":`, http.StatusBadRequest, "invalid_json", "", "not a JSON object"},
		{`{"model":"` + testModel + `","messages":"hello"}`, http.StatusBadRequest, "invalid_type", "messages", "got JSON string, want array"},
		{`{"model":"` + testModel + `","stream":"yes","messages":[]}`, http.StatusBadRequest, "invalid_type", "stream", "got JSON string, want boolean"},
	} {
		status, e := postError(t, ctx, b.url+"/chat/completions", tc.body)
		if status != tc.status || e.Code != tc.code || e.Type != "invalid_request_error" || e.Param != tc.param ||
			!strings.Contains(e.Message, tc.inMessage) || strings.Contains(e.Message, "Go struct") {
			t.Errorf("%.30s…: %d %+v, want %d %s param %q", tc.body, status, e, tc.status, tc.code, tc.param)
		}
	}
	if b.f.LLM.Calls() != 0 {
		t.Errorf("upstream calls = %d, want 0", b.f.LLM.Calls())
	}
}

type openAIError struct {
	Message, Type, Code, Param string
}

// postError posts body (with key as its bearer token, when given) and
// decodes the error it answers with, unless it answers 200.
func postError(t *testing.T, ctx context.Context, url, body string, key ...string) (int, openAIError) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, k := range key {
		req.Header.Set("Authorization", "Bearer "+k)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, openAIError{}
	}
	var e struct{ Error openAIError }
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatalf("%d %s: not an OpenAI error: %v", resp.StatusCode, raw, err)
	}
	return resp.StatusCode, e.Error
}

// TestCORS: a browser on a configured origin gets its preflight answered
// and the headers it may read; another origin gets no CORS headers.
func TestCORS(t *testing.T) {
	t.Parallel()
	const origin = "https://app.example"
	b := setup(t, fleettest.Options{}, func(c *gateway.Config) { c.CORSOrigins = []string{origin} })
	ctx := fleettest.Context(t, 30*time.Second)
	preflight := func(from string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, http.MethodOptions, b.url+"/chat/completions", nil)
		req.Header.Set("Origin", from)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := preflight(origin)
	h := resp.Header
	if resp.StatusCode != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != origin ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Last-Event-ID") ||
		!strings.Contains(h.Get("Access-Control-Expose-Headers"), gateway.HeaderResumeToken) {
		t.Errorf("preflight from %s: %d %v", origin, resp.StatusCode, h)
	}
	if resp := preflight("https://evil.example"); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("another origin was allowed: %v", resp.Header)
	}
}
