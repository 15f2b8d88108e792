package llm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

// chunk is one chat.completion.chunk data line with a content delta.
func chunk(content string) string {
	return fmt.Sprintf(`data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":%q},"finish_reason":null}]}`+"\n\n", content)
}

const (
	finishStop = `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n"
	done       = "data: [DONE]\n\n"
)

// TestKeepAlivesCountAsActivity: comments are not messages (go-openai
// would give up after 300 lines that are not data), and they reset the
// idle timer: a router that says it is still working for four idle
// timeouts (400 comments, 2ms apart at least) is not cut off.
func TestKeepAlivesCountAsActivity(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{IdleTimeout: 200 * time.Millisecond, MaxRetries: -1}, script(llmtest.Reply{
		Tokens: []string{"thought", " through"}, KeepAlives: 400, KeepAliveEvery: 2 * time.Millisecond,
	}))
	s, err := c.Stream(t.Context(), job("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ds, err := collect(t, s)
	if err != nil || content(ds) != "thought through" {
		t.Fatalf("content %q, %v", content(ds), err)
	}
	if n := s.Info().Comments; n != 400 {
		t.Errorf("%d comments seen, want 400", n)
	}
	if srv.Calls() != 1 {
		t.Errorf("%d calls", srv.Calls())
	}
}

// TestSilenceAfterKeepAlivesTimesOut: keep-alives do not switch the idle
// timeout off; silence after them still ends the stream.
func TestSilenceAfterKeepAlivesTimesOut(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{IdleTimeout: 200 * time.Millisecond, MaxRetries: -1},
		script(llmtest.Reply{Raw: []string{": OPENROUTER PROCESSING\n\n", chunk("a")}, Delay: time.Hour}))
	asError(t, streamErr(t, c, job("x")), protocol.CodeTimeout)
}

// TestInStreamErrorBeforeOutputRetried: a provider failure reported in
// the stream before any output is retried like a 5xx.
func TestInStreamErrorBeforeOutputRetried(t *testing.T) {
	t.Parallel()
	fail := llmtest.Reply{Raw: []string{": OPENROUTER PROCESSING\n\n",
		`data: {"id":"g","error":{"code":502,"message":"Provider returned error"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}` + "\n\n", done}}
	c, srv := setup(t, Config{}, script(fail))
	ds, err := run(t, c, job("x"))
	if err != nil || content(ds) != llmtest.Answer(srv.Requests()[1]) {
		t.Fatalf("content %q, %v", content(ds), err)
	}
	if st := c.Stats(); st.Calls != 2 || st.Failures != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestInStreamErrorAfterOutput: after output the error ends the stream
// (the caller's mid-stream policy decides), with the provider's message,
// its code kept, nothing retried here.
func TestInStreamErrorAfterOutput(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{}, script(llmtest.Reply{Raw: []string{chunk("Once"),
		`data: {"error":{"code":429,"message":"Rate limit exceeded: free-models-per-min"}}` + "\n\n", done}}))
	ds, err := run(t, c, job("x"))
	e := asError(t, err, protocol.CodeRateLimited)
	if content(ds) != "Once" || e.Retryable || e.Message != "the upstream reported an error in its stream (429): Rate limit exceeded: free-models-per-min" {
		t.Errorf("content %q, error %+v", content(ds), e)
	}
	if srv.Calls() != 1 {
		t.Errorf("%d calls", srv.Calls())
	}
}

func TestInStreamErrorShapes(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, body string
		code       protocol.Code
		retryable  bool
		msg        string
	}{
		{"event named error", "event: error\ndata: {\"message\":\"overloaded\",\"type\":\"overloaded_error\"}\n\n",
			protocol.CodeUpstreamUnavailable, true, "(overloaded_error): overloaded"},
		{"error as a string", `data: {"error":"model not loaded"}` + "\n\n", protocol.CodeUpstreamError, false, "model not loaded"},
		{"finish_reason error alone", `data: {"choices":[{"index":0,"delta":{},"finish_reason":"error"}]}` + "\n\n",
			protocol.CodeUpstreamError, true, `finished with "error"`},
		{"moderation", `data: {"error":{"code":403,"message":"flagged"}}` + "\n\n", protocol.CodeUpstreamError, false, "(403): flagged"},
		{"timeout", `data: {"error":{"code":408,"message":"took too long"}}` + "\n\n", protocol.CodeTimeout, true, "took too long"},
		{"JSON error body", `{"error":{"message":"quota","type":"insufficient_quota"}}`, protocol.CodeUpstreamError, false, "(insufficient_quota): quota"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, _ := setup(t, Config{MaxRetries: -1}, script(llmtest.Reply{Raw: []string{tt.body}}))
			if strings.HasPrefix(tt.body, "{") {
				c, _ = setup(t, Config{MaxRetries: -1}, script(llmtest.Reply{Raw: []string{tt.body}, ContentType: "application/json"}))
			}
			e := asError(t, streamErr(t, c, job("x")), tt.code)
			if e.Retryable != tt.retryable || e.Refused() == tt.retryable || !strings.Contains(e.Message, tt.msg) || e.Status != 0 {
				t.Errorf("error %+v", e)
			}
		})
	}
}

// TestInStreamErrorRedactedAndBounded: the provider's message never
// carries the API key, anywhere in the error chain, and is cut short.
func TestInStreamErrorRedactedAndBounded(t *testing.T) {
	t.Parallel()
	const key = "sk-chatfleet-TOPSECRET-0a1b2c3d"
	long := strings.Repeat("é", 2000)
	c, _ := setup(t, Config{APIKey: key, MaxRetries: -1}, script(llmtest.Reply{Raw: []string{
		chunk("a"), `data: {"error":{"message":"bad key ` + key + " " + long + `"}}` + "\n\n"}}))
	err := streamErr(t, c, job("x"))
	e := asError(t, err, protocol.CodeUpstreamError)
	if !strings.Contains(e.Message, "bad key [redacted]") || len(e.Message) > maxMessage+100 {
		t.Errorf("message %q (%d bytes)", e.Message, len(e.Message))
	}
	for u := error(e); u != nil; u = errors.Unwrap(u) {
		if strings.Contains(u.Error(), "TOPSECRET") {
			t.Errorf("key in %T: %s", u, u)
		}
	}
}

// TestNotStreamedAnswer: a server that ignores "stream": true and answers
// with one chat.completion gives one delta with everything, tool calls
// indexed.
func TestNotStreamedAnswer(t *testing.T) {
	t.Parallel()
	body := `{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,` +
		`"reasoning":"think","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}},` +
		`{"id":"call_2","type":"function","function":{"name":"g","arguments":"{\"a\":1}"}}]},"finish_reason":"tool_calls"}],` +
		`"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`
	c, _ := setup(t, Config{}, script(llmtest.Reply{Raw: []string{body}, ContentType: "application/json"}))
	s, err := c.Stream(t.Context(), job("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ds, err := collect(t, s)
	if err != nil || len(ds) != 1 {
		t.Fatalf("deltas %+v, %v", ds, err)
	}
	d := ds[0]
	if d.ReasoningContent != "think" || len(d.ToolCalls) != 2 || *d.ToolCalls[1].Index != 1 || d.ToolCalls[1].Function.Arguments != `{"a":1}` ||
		d.FinishReason != "tool_calls" || d.Usage == nil || d.Usage.TotalTokens != 7 {
		t.Errorf("delta %+v", d)
	}
	if !s.Info().NotStreamed {
		t.Errorf("info %+v", s.Info())
	}
}

func TestMalformedBodies(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		rep  llmtest.Reply
		msg  string
	}{
		{"JSON that is no completion", llmtest.Reply{Raw: []string{`{"hello":"world"}`}}, "neither a stream nor a chat.completion"},
		{"JSON cut short", llmtest.Reply{Raw: []string{`{"choices":[`}}, "neither a stream nor a chat.completion"},
		{"a line too long", llmtest.Reply{Raw: []string{"data: {\"x\":\"" + strings.Repeat("x", maxEventBytes) + "\"}\n\n"}}, "longer than"},
		{"a chunk that is not JSON", llmtest.Reply{Raw: []string{"data: hello\n\n", done}}, "malformed stream"},
		{"an HTML page", llmtest.Reply{Raw: []string{"<html>\n<body>Gateway says hi</body>\n</html>\n"}, ContentType: "text/html"},
			"neither an event stream nor a chat.completion"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, srv := setup(t, Config{}, script(tt.rep))
			e := asError(t, streamErr(t, c, job("x")), protocol.CodeUpstreamError)
			if !strings.Contains(e.Message, tt.msg) || e.Retryable {
				t.Errorf("error %+v", e)
			}
			if srv.Calls() != 1 {
				t.Errorf("%d calls: a malformed answer is not retried", srv.Calls())
			}
		})
	}
}

// TestLineEndsAndPieces: a stream cut into arbitrary pieces (a line end
// split between CR and LF included), with CR, LF and CRLF line ends and a
// last line without one, reads the same.
func TestLineEndsAndPieces(t *testing.T) {
	t.Parallel()
	stream := strings.ReplaceAll(chunk("a"), "\n", "\r\n") + strings.ReplaceAll(chunk("b"), "\n", "\r") + chunk("c") + finishStop + "data: [DONE]"
	var pieces []string
	for i := 0; i < len(stream); i += 7 {
		pieces = append(pieces, stream[i:min(i+7, len(stream))])
	}
	c, _ := setup(t, Config{}, script(llmtest.Reply{Raw: pieces}))
	ds, err := run(t, c, job("x"))
	if err != nil || content(ds) != "abc" || ds[len(ds)-1].FinishReason != "stop" {
		t.Errorf("deltas %+v, %v", ds, err)
	}
}

// TestMissingFinishReasonAfterToolCalls: a stream that never says why it
// ended finishes "tool_calls" when it called tools.
func TestMissingFinishReasonAfterToolCalls(t *testing.T) {
	t.Parallel()
	call := `data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]}}]}` + "\n\n"
	c, _ := setup(t, Config{}, script(llmtest.Reply{Raw: []string{call, done}}))
	s, err := c.Stream(t.Context(), job("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ds, err := collect(t, s)
	if err != nil || len(ds) != 2 || ds[1].FinishReason != "tool_calls" || !s.Info().NoFinishReason {
		t.Errorf("deltas %+v, %v, info %+v", ds, err, s.Info())
	}
}

// TestStreamOptionsRefused: an upstream that rejects stream_options is
// told apart, with the setting to change, and not retried; with
// NoStreamOptions the field is not sent and the stream works.
func TestStreamOptionsRefused(t *testing.T) {
	t.Parallel()
	refuse := llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		if _, ok := r.JSON()["stream_options"]; ok {
			return llmtest.Reply{Status: http.StatusBadRequest, Message: "Unrecognized request argument supplied: stream_options"}
		}
		return llmtest.Reply{Tokens: []string{"fine"}}
	})
	c, srv := setup(t, Config{}, refuse)
	err := streamErr(t, c, job("x"))
	e := asError(t, err, protocol.CodeUpstreamError)
	if !errors.Is(err, ErrStreamOptionsRefused) || e.Status != 400 || !strings.Contains(e.Message, "CHATFLEET_LLM_STREAM_OPTIONS=false") {
		t.Errorf("error %+v", e)
	}
	if srv.Calls() != 1 {
		t.Errorf("%d calls", srv.Calls())
	}

	c, srv = setup(t, Config{NoStreamOptions: true}, refuse)
	ds, err := run(t, c, job("x"))
	if err != nil || content(ds) != "fine" {
		t.Fatalf("content %q, %v", content(ds), err)
	}
	if body := srv.Requests()[0].Body; bytes.Contains(body, []byte("stream_options")) || !srv.Requests()[0].Stream() {
		t.Errorf("request body %s", body)
	}

	// Other 400s are not mistaken for it.
	c, _ = setup(t, Config{}, script(llmtest.Reply{Status: http.StatusBadRequest, Message: "max_tokens is too large"}))
	if err := streamErr(t, c, job("x")); errors.Is(err, ErrStreamOptionsRefused) {
		t.Errorf("%v wraps ErrStreamOptionsRefused", err)
	}
}

// FuzzDialectReader: whatever an upstream sends, the reader returns only
// "data: …" lines, nothing after "data: [DONE]", and never panics.
func FuzzDialectReader(f *testing.F) {
	for _, d := range llmtest.Dialects() {
		f.Add(d.Body)
	}
	f.Add([]byte("data: {\"error\":{\"code\":\"x\"}}\r\rdata:[DONE]"))
	f.Add([]byte("\ufeff: hi\revent: error\ndata: nope\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := newDialectReader(bytes.NewReader(in), &StreamInfo{})
		out, _ := io.ReadAll(r)
		lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
		for i, line := range lines {
			if line != "" && !strings.HasPrefix(line, "data: ") || line == "data: [DONE]" && i != len(lines)-1 {
				t.Fatalf("line %d of %d: %q", i, len(lines), line)
			}
		}
	})
}

func TestModels(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{}, llmtest.WithModels("zeta", "alpha"))
	ids, err := c.Models(t.Context())
	if err != nil || strings.Join(ids, ",") != "alpha,zeta" {
		t.Errorf("models %v, %v", ids, err)
	}
	c, srv := setup(t, Config{}, llmtest.WithModels())
	_, err = c.Models(t.Context())
	if e := asError(t, err, protocol.CodeUpstreamError); e.Status != http.StatusNotFound {
		t.Errorf("error %+v", e)
	}
	srv.Close()
	asError(t, func() error { _, err := c.Models(t.Context()); return err }(), protocol.CodeUpstreamUnavailable)
}

// TestRefused: which errors the same request would meet again.
func TestRefused(t *testing.T) {
	t.Parallel()
	inStream := func(e *upstreamError) *Error { return e.classify(e) }
	for _, tt := range []struct {
		e    *Error
		want bool
	}{
		{statusError(400, "bad", 0, nil), true},
		{statusError(403, "flagged", 0, nil), true},
		{statusError(408, "slow", 0, nil), false},
		{statusError(429, "later", 0, nil), false},
		{statusError(503, "down", 0, nil), false},
		{&Error{Code: protocol.CodeUpstreamError, Message: "the stream broke off"}, false},
		{inStream(&upstreamError{status: 400, message: "prompt too long"}), true},
		{inStream(&upstreamError{code: "server_error", message: "gone"}), false},
		{inStream(&upstreamError{bare: true}), false},
	} {
		if got := tt.e.Refused(); got != tt.want {
			t.Errorf("%v: Refused = %v, want %v", tt.e, got, tt.want)
		}
	}
}
