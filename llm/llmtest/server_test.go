package llmtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// setup starts a server closed at the end of the test.
func setup(t *testing.T, opts ...Option) *Server {
	t.Helper()
	s := New(opts...)
	t.Cleanup(s.Close)
	return s
}

func body(model, prompt string, includeUsage bool) string {
	b, _ := json.Marshal(map[string]any{
		"model":          model,
		"stream":         true,
		"stream_options": map[string]bool{"include_usage": includeUsage},
		"messages": []map[string]string{
			{"role": "system", "content": "be brief"},
			{"role": "user", "content": prompt},
		},
	})
	return string(b)
}

// post sends a chat-completions request; the response body is closed at
// the end of the test.
func post(t *testing.T, ctx context.Context, s *Server, b string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/chat/completions", strings.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// readEvents reads the data payloads of a server-sent event stream until it
// ends, returning how it ended.
func readEvents(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			out = append(out, data)
		} else if line != "" {
			return out, errors.New("unexpected line " + line)
		}
	}
	return out, sc.Err()
}

type testChunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role      string              `json:"role"`
			Content   *string             `json:"content"`
			ToolCalls []protocol.ToolCall `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *protocol.Usage `json:"usage"`
}

func decodeChunks(t *testing.T, data []string) []testChunk {
	t.Helper()
	var out []testChunk
	for _, d := range data {
		if d == "[DONE]" {
			continue
		}
		var c testChunk
		if err := json.Unmarshal([]byte(d), &c); err != nil {
			t.Fatalf("chunk %s: %v", d, err)
		}
		out = append(out, c)
	}
	return out
}

func TestStreamFormat(t *testing.T) {
	t.Parallel()
	s := setup(t)
	resp := post(t, t.Context(), s, body("sim-1", "What is NATS?", true))
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	data, err := readEvents(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if data[len(data)-1] != "[DONE]" {
		t.Fatalf("last event %q, want [DONE]", data[len(data)-1])
	}
	chunks := decodeChunks(t, data)
	req := s.Requests()[0]
	want := SplitTokens(Answer(req))
	// role chunk + tokens + final chunk + usage chunk
	if len(chunks) != len(want)+3 {
		t.Fatalf("%d chunks, want %d", len(chunks), len(want)+3)
	}
	for _, c := range chunks {
		if c.Object != "chat.completion.chunk" || c.Model != "sim-1" || c.ID == "" {
			t.Errorf("chunk header: %+v", c)
		}
	}
	if chunks[0].Choices[0].Delta.Role != "assistant" {
		t.Errorf("first chunk has no role: %+v", chunks[0])
	}
	var got strings.Builder
	for _, c := range chunks[1 : len(chunks)-2] {
		got.WriteString(*c.Choices[0].Delta.Content)
		if c.Choices[0].FinishReason != nil {
			t.Errorf("finish_reason on a content chunk")
		}
	}
	if got.String() != Answer(req) {
		t.Errorf("content %q, want %q", got.String(), Answer(req))
	}
	final := chunks[len(chunks)-2]
	if fr := final.Choices[0].FinishReason; fr == nil || *fr != "stop" {
		t.Errorf("final chunk finish_reason = %v", fr)
	}
	usage := chunks[len(chunks)-1]
	if len(usage.Choices) != 0 || !strings.Contains(data[len(data)-2], `"choices":[]`) || usage.Usage == nil {
		t.Fatalf("usage chunk = %s", data[len(data)-2])
	}
	// "be brief" + "What is NATS?" = 5 words.
	if u := *usage.Usage; u.PromptTokens != 5 || u.CompletionTokens != len(want) || u.TotalTokens != 5+len(want) {
		t.Errorf("usage = %+v", u)
	}
}

func TestNoUsageWithoutIncludeUsage(t *testing.T) {
	t.Parallel()
	s := setup(t, WithScript(func(Request) Reply { return Reply{Tokens: []string{"a"}} }))
	data, err := readEvents(post(t, t.Context(), s, body("m", "x", false)).Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range decodeChunks(t, data) {
		if c.Usage != nil {
			t.Errorf("usage sent without include_usage")
		}
	}
}

func TestDefaultReplyDeterministic(t *testing.T) {
	t.Parallel()
	r := func(model, prompt string) Request { return Request{Body: []byte(body(model, prompt, false))} }
	a, b := r("m", "hello there"), r("m", "hello there")
	if Answer(a) != Answer(b) || strings.Join(DefaultReply(a).Tokens, "|") != strings.Join(DefaultReply(b).Tokens, "|") {
		t.Errorf("identical requests, different answers")
	}
	if Answer(a) == Answer(r("m", "something else")) {
		t.Errorf("different prompts, same answer")
	}
	if Answer(a) == Answer(r("other", "hello there")) {
		t.Errorf("different models, same answer")
	}
	if got := strings.Join(DefaultReply(a).Tokens, ""); got != Answer(a) {
		t.Errorf("tokens join to %q, want %q", got, Answer(a))
	}
	long := Answer(r("m", strings.Repeat("word ", 50)))
	if !strings.Contains(long, "…") || len([]rune(long)) > 150 {
		t.Errorf("long prompt not truncated: %q", long)
	}
	parts := Request{Body: []byte(`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"from parts"}]}]}`)}
	if !strings.Contains(Answer(parts), "from parts") {
		t.Errorf("parts content ignored: %q", Answer(parts))
	}
}

// streamed posts b and returns the content deltas and the finish reason.
func streamed(t *testing.T, s *Server, b string) (tokens []string, finish string) {
	t.Helper()
	data, err := readEvents(post(t, t.Context(), s, b).Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range decodeChunks(t, data) {
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil && *ch.Delta.Content != "" {
				tokens = append(tokens, *ch.Delta.Content)
			}
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	return tokens, finish
}

// withLimit adds field (max_tokens, max_completion_tokens) = n to a body.
func withLimit(t *testing.T, b, field string, n int) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(b), &m); err != nil {
		t.Fatal(err)
	}
	m[field] = n
	out, _ := json.Marshal(m)
	return string(out)
}

// TestWithTokens: the simulated model's length is configurable, shorter
// or longer than its natural answer, always ending a sentence; the stream
// is what AnswerTokens says.
func TestWithTokens(t *testing.T) {
	t.Parallel()
	natural := len(SplitTokens(Answer(Request{Body: []byte(body("m", "long one", true))})))
	for _, n := range []int{3, natural, 200} {
		s := setup(t, WithTokens(n))
		tokens, finish := streamed(t, s, body("m", "long one", true))
		text := strings.Join(tokens, "")
		if len(tokens) != n || finish != "stop" || !strings.HasSuffix(text, ".") {
			t.Errorf("WithTokens(%d): %d tokens, finish %q, text %q", n, len(tokens), finish, text)
		}
		if want := AnswerTokens(s.Requests()[0], n); text != want {
			t.Errorf("WithTokens(%d): streamed %q, AnswerTokens says %q", n, text, want)
		}
		if !strings.HasPrefix(text, "Simulated") {
			t.Errorf("WithTokens(%d): %q", n, text)
		}
	}
}

// TestMaxTokens: the default script stops at the request's max_tokens or
// max_completion_tokens (the smaller), with finish_reason "length", as a
// model does; Answer and the usage agree.
func TestMaxTokens(t *testing.T) {
	t.Parallel()
	s := setup(t, WithTokens(50))
	tokens, finish := streamed(t, s, withLimit(t, body("m", "count", true), "max_tokens", 7))
	if len(tokens) != 7 || finish != "length" {
		t.Errorf("max_tokens 7: %d tokens, finish %q", len(tokens), finish)
	}
	b := withLimit(t, withLimit(t, body("m", "count", true), "max_tokens", 9), "max_completion_tokens", 4)
	if tokens, finish = streamed(t, s, b); len(tokens) != 4 || finish != "length" {
		t.Errorf("max_completion_tokens 4, max_tokens 9: %d tokens, finish %q", len(tokens), finish)
	}
	if tokens, finish = streamed(t, s, withLimit(t, body("m", "count", true), "max_tokens", 500)); len(tokens) != 50 || finish != "stop" {
		t.Errorf("max_tokens above the answer: %d tokens, finish %q", len(tokens), finish)
	}
	plain := setup(t)
	tokens, _ = streamed(t, plain, withLimit(t, body("m", "count", true), "max_tokens", 2))
	if req := plain.Requests()[0]; len(tokens) != 2 || strings.Join(tokens, "") != Answer(req) || req.MaxTokens() != 2 {
		t.Errorf("default length, max_tokens 2: %q; Answer says %q", tokens, Answer(req))
	}
}

// TestListen: Listen serves on the address asked for, and reports an
// address in use instead of panicking.
func TestListen(t *testing.T) {
	t.Parallel()
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	addr := strings.TrimSuffix(strings.TrimPrefix(s.URL(), "http://"), "/v1")
	if _, err := Listen(addr); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("second Listen on %s: %v, want address already in use", addr, err)
	}
	if tokens, _ := streamed(t, s, body("m", "hi", false)); len(tokens) == 0 {
		t.Error("no answer")
	}
}

func TestSplitTokens(t *testing.T) {
	t.Parallel()
	tests := map[string][]string{
		"":             nil,
		"one":          {"one"},
		"one two":      {"one", " two"},
		"a  b\nc ":     {"a", "  b", "\nc", " "},
		" lead":        {" lead"},
		"héllo wörld.": {"héllo", " wörld."},
	}
	for in, want := range tests {
		got := SplitTokens(in)
		if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
			t.Errorf("SplitTokens(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestErrorReply(t *testing.T) {
	t.Parallel()
	s := setup(t, WithScript(func(Request) Reply {
		return Reply{Status: 429, Message: "slow down", RetryAfter: 1500 * time.Millisecond}
	}))
	resp := post(t, t.Context(), s, body("m", "x", false))
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	var e struct {
		Error struct {
			Message, Type, Code string
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	if e.Error.Message != "slow down" || e.Error.Code != "rate_limit_exceeded" || e.Error.Type == "" {
		t.Errorf("error body %+v", e)
	}
	if s.Calls() != 1 {
		t.Errorf("Calls = %d", s.Calls())
	}
}

func TestRejectsNonStreaming(t *testing.T) {
	t.Parallel()
	s := setup(t)
	resp := post(t, t.Context(), s, `{"model":"m","messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 400 {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
	if s.Calls() != 1 || s.Requests()[0].Stream() {
		t.Errorf("calls %d", s.Calls())
	}
}

func TestToolCallDeltas(t *testing.T) {
	t.Parallel()
	s := setup(t, WithScript(func(Request) Reply {
		return Reply{ToolCalls: []protocol.ToolCall{{ID: "call_a", Function: protocol.FunctionCall{Name: "f", Arguments: `{"x":1}`}}}}
	}))
	data, err := readEvents(post(t, t.Context(), s, body("m", "x", false)).Body)
	if err != nil {
		t.Fatal(err)
	}
	chunks := decodeChunks(t, data)
	first := chunks[1].Choices[0].Delta.ToolCalls[0]
	if *first.Index != 0 || first.ID != "call_a" || first.Type != "function" || first.Function.Name != "f" {
		t.Errorf("first tool-call delta %+v", first)
	}
	var args strings.Builder
	pieces := 0
	for _, c := range chunks[2 : len(chunks)-1] {
		args.WriteString(c.Choices[0].Delta.ToolCalls[0].Function.Arguments)
		pieces++
	}
	if args.String() != `{"x":1}` || pieces < 2 {
		t.Errorf("arguments %q in %d pieces", args.String(), pieces)
	}
	if fr := chunks[len(chunks)-1].Choices[0].FinishReason; fr == nil || *fr != "tool_calls" {
		t.Errorf("finish_reason %v", fr)
	}
}

func TestCutAfter(t *testing.T) {
	t.Parallel()
	s := setup(t, WithScript(func(Request) Reply { return Reply{Tokens: []string{"a", "b", "c"}, CutAfter: 2} }))
	data, err := readEvents(post(t, t.Context(), s, body("m", "x", false)).Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read error %v, want unexpected EOF", err)
	}
	if len(data) != 3 { // role + 2 tokens
		t.Errorf("got %d events before the cut: %q", len(data), data)
	}
}

func TestOmitDone(t *testing.T) {
	t.Parallel()
	s := setup(t, WithScript(func(Request) Reply { return Reply{Tokens: []string{"a"}, OmitDone: true} }))
	data, err := readEvents(post(t, t.Context(), s, body("m", "x", false)).Body)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 || data[len(data)-1] == "[DONE]" {
		t.Errorf("events %q", data)
	}
}

func TestStallReleaseAndDisconnect(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	s := setup(t, WithScript(func(r Request) Reply {
		if r.N == 1 {
			return Reply{Tokens: []string{"a", "b"}, StallAfter: 1, Release: release}
		}
		return Reply{Tokens: []string{"a"}, StallAfter: -1}
	}))

	// Released: the stream completes.
	resp := post(t, t.Context(), s, body("m", "x", false))
	r := bufio.NewReader(resp.Body)
	for range 2 { // role chunk, first token
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		_, _ = r.ReadString('\n')
	}
	close(release)
	data, err := readEvents(r)
	if err != nil || data[len(data)-1] != "[DONE]" {
		t.Fatalf("after release: %q, %v", data, err)
	}

	// The client leaves during a stall: a disconnect.
	ctx, cancel := context.WithCancel(t.Context())
	resp = post(t, ctx, s, body("m", "x", false))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	cancel()
	if err := s.WaitDisconnects(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if s.Disconnects() != 1 {
		t.Errorf("Disconnects = %d", s.Disconnects())
	}
}

func TestCloseEndsStalledHandler(t *testing.T) {
	t.Parallel()
	s := New(WithScript(func(Request) Reply { return Reply{StallAfter: -1} }))
	resp := post(t, t.Context(), s, body("m", "x", false))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	s.Close() // must not hang; goleak checks the handler is gone
	s.Close()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("stream read to the end although the server was closed mid-stall")
	}
	if s.Disconnects() != 0 {
		t.Errorf("server close counted as a client disconnect")
	}
}

func TestWaitCalls(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.WaitCalls(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitCalls on a cancelled ctx = %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.WaitCalls(t.Context(), 2) }()
	for range 2 {
		resp := post(t, t.Context(), s, body("m", "x", false))
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	reqs := s.Requests()
	if len(reqs) != 2 || reqs[0].N != 1 || reqs[1].N != 2 || reqs[1].LastUserMessage() != "x" || reqs[0].Model() != "m" {
		t.Errorf("requests %+v", reqs)
	}
	if !bytes.Contains(reqs[0].Body, []byte(`"stream":true`)) || reqs[0].Header.Get("Content-Type") != "application/json" {
		t.Errorf("request not recorded verbatim")
	}
}

func TestUnknownPath(t *testing.T) {
	t.Parallel()
	s := setup(t)
	resp, err := http.Post(s.URL()+"/embeddings", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || s.Calls() != 0 {
		t.Errorf("status %d, calls %d", resp.StatusCode, s.Calls())
	}
}
