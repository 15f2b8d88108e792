package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

func TestStreamContent(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{APIKey: "sk-test"})
	s, err := c.Stream(t.Context(), job("hello there world"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ds, err := collect(t, s)
	if err != nil {
		t.Fatal(err)
	}
	req := srv.Requests()[0]
	tokens := llmtest.SplitTokens(llmtest.Answer(req))
	// One delta per token, then the finish reason, then the usage.
	if len(ds) != len(tokens)+2 {
		t.Fatalf("%d deltas, want %d: %+v", len(ds), len(tokens)+2, ds)
	}
	for i, tok := range tokens {
		if ds[i].Content != tok {
			t.Errorf("delta %d = %q, want %q", i, ds[i].Content, tok)
		}
	}
	if content(ds) != llmtest.Answer(req) {
		t.Errorf("content %q", content(ds))
	}
	if fr := ds[len(ds)-2].FinishReason; fr != "stop" {
		t.Errorf("finish reason %q", fr)
	}
	u := ds[len(ds)-1].Usage
	if u == nil || u.PromptTokens != 3 || u.CompletionTokens != len(tokens) || u.TotalTokens != 3+len(tokens) {
		t.Errorf("usage %+v", u)
	}
	// io.EOF again, and Close after the end is fine.
	if _, err := s.Recv(); err != io.EOF {
		t.Errorf("Recv after the end = %v", err)
	}
	if got := req.Header.Get("Authorization"); got != "Bearer sk-test" {
		t.Errorf("Authorization %q", got)
	}
	if !req.Stream() || !req.IncludeUsage() || req.Model() != "sim-model" {
		t.Errorf("request body %s", req.Body)
	}
	st := c.Stats()
	if st.Calls != 1 || st.Retries != 0 || st.Failures != 0 || st.BreakerState != BreakerClosed {
		t.Errorf("stats %+v", st)
	}
}

func TestToolCallDeltas(t *testing.T) {
	t.Parallel()
	args := `{"city":"Paris","unit":"celsius"}`
	c, _ := setup(t, Config{}, script(llmtest.Reply{ToolCalls: []protocol.ToolCall{
		{ID: "call_1", Type: "function", Function: protocol.FunctionCall{Name: "get_weather", Arguments: args}},
		{ID: "call_2", Type: "function", Function: protocol.FunctionCall{Name: "get_time", Arguments: `{}`}},
	}}))
	ds, err := run(t, c, job("weather?"))
	if err != nil {
		t.Fatal(err)
	}
	type call struct{ id, name, args string }
	calls := map[int]*call{}
	finish := ""
	for _, d := range ds {
		for _, tc := range d.ToolCalls {
			if tc.Index == nil {
				t.Fatalf("tool-call delta without index: %+v", tc)
			}
			cl := calls[*tc.Index]
			if cl == nil {
				cl = &call{}
				calls[*tc.Index] = cl
			}
			cl.id += tc.ID
			cl.name += tc.Function.Name
			cl.args += tc.Function.Arguments
		}
		if d.FinishReason != "" {
			finish = d.FinishReason
		}
	}
	if len(calls) != 2 || *calls[0] != (call{"call_1", "get_weather", args}) || *calls[1] != (call{"call_2", "get_time", `{}`}) {
		t.Errorf("calls: %+v %+v", calls[0], calls[1])
	}
	if finish != "tool_calls" {
		t.Errorf("finish reason %q", finish)
	}
}

func TestRequestBodyReachesUpstream(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{})
	j := job("ignored")
	j.Messages = []protocol.Message{
		{Role: protocol.RoleSystem, Content: protocol.TextContent("")},
		{Role: protocol.RoleUser, Name: "ann", Content: protocol.Content{Parts: []protocol.ContentPart{
			{Type: "text", Text: "look"},
			{Type: "image_url", ImageURL: &protocol.ImageURL{URL: "https://x/y.png", Detail: "low"}},
		}}},
		{Role: protocol.RoleAssistant, Content: protocol.Content{Null: true}, ToolCalls: []protocol.ToolCall{
			{ID: "c1", Type: "function", Function: protocol.FunctionCall{Name: "f", Arguments: `{"a":1}`}},
		}},
		{Role: protocol.RoleTool, ToolCallID: "c1", Content: protocol.TextContent("42")},
	}
	j.Temperature = protocol.Float(0)
	j.TopP = protocol.Float(0)
	j.PresencePenalty = protocol.Float(0)
	j.FrequencyPenalty = protocol.Float(0.25)
	j.MaxTokens = protocol.Int(50)
	j.MaxCompletionTokens = protocol.Int(60)
	seed := int64(7)
	j.Seed = &seed
	j.N = protocol.Int(1)
	j.Stop = protocol.Stop{"END"}
	j.Tools = []protocol.Tool{
		{Type: "function", Function: protocol.FunctionSpec{Name: "f", Description: "d", Parameters: json.RawMessage(`{"type":"object","properties":{"a":{"type":"integer"}}}`)}},
		{Type: "function", Function: protocol.FunctionSpec{Name: "g"}},
	}
	j.ToolChoice = json.RawMessage(`{"type":"function","function":{"name":"f"}}`)
	j.ParallelToolCalls = protocol.Bool(false)
	j.ResponseFormat = &protocol.ResponseFormat{Type: "json_schema", JSONSchema: &protocol.JSONSchema{
		Name: "s", Schema: json.RawMessage(`{"type":"object"}`), Strict: true,
	}}
	j.LogitBias = map[string]int{"50256": -100}
	j.User = "u1"
	j.ReasoningEffort = "low"
	j.Priority, j.QueueTimeoutMS, j.TimeoutMS = protocol.PriorityHigh, 1000, 2000 // chatfleet's own: never sent
	j.Extra = map[string]json.RawMessage{
		"top_k":          json.RawMessage(`40`),
		"vendor":         json.RawMessage(`{"x":[1,2]}`),
		"stream":         json.RawMessage(`false`),
		"Stream_Options": json.RawMessage(`null`),
	}
	if err := streamErr(t, c, j); err != nil {
		t.Fatal(err)
	}
	body := srv.Requests()[0].JSON()
	want := map[string]string{
		"model":                 `"sim-model"`,
		"temperature":           `0`,
		"top_p":                 `0`,
		"presence_penalty":      `0`,
		"frequency_penalty":     `0.25`,
		"max_tokens":            `50`,
		"max_completion_tokens": `60`,
		"seed":                  `7`,
		"n":                     `1`,
		"stop":                  `["END"]`,
		"tool_choice":           `{"type":"function","function":{"name":"f"}}`,
		"parallel_tool_calls":   `false`,
		"response_format":       `{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object"},"strict":true}}`,
		"logit_bias":            `{"50256":-100}`,
		"user":                  `"u1"`,
		"reasoning_effort":      `"low"`,
		"stream":                `true`,
		"stream_options":        `{"include_usage":true}`,
		"top_k":                 `40`,
		"vendor":                `{"x":[1,2]}`,
		"tools": `[{"function":{"name":"f","description":"d","parameters":{"type":"object","properties":{"a":{"type":"integer"}}}},"type":"function"},` +
			`{"function":{"name":"g","parameters":{"type":"object","properties":{}}},"type":"function"}]`,
		"messages": `[{"content":"","role":"system"},` +
			`{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"https://x/y.png","detail":"low"}}],"name":"ann"},` +
			`{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},` +
			`{"role":"tool","content":"42","tool_call_id":"c1"}]`,
	}
	for k, v := range want {
		if got := string(body[k]); !jsonEqual(t, got, v) {
			t.Errorf("%s = %s, want %s", k, got, v)
		}
	}
	for k := range body {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected field %s = %s", k, body[k])
		}
	}
}

func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

func TestUnsetSamplingLeftToUpstream(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{})
	if err := streamErr(t, c, job("x")); err != nil {
		t.Fatal(err)
	}
	body := srv.Requests()[0].JSON()
	for _, k := range []string{"temperature", "top_p", "presence_penalty", "frequency_penalty", "tools", "n"} {
		if v, ok := body[k]; ok {
			t.Errorf("unset %s sent as %s", k, v)
		}
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{IdleTimeout: 250 * time.Millisecond},
		script(llmtest.Reply{Tokens: []string{"a", "b"}, StallAfter: 1}))
	s, err := c.Stream(t.Context(), job("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if d, err := s.Recv(); err != nil || d.Content != "a" {
		t.Fatalf("first delta %+v, %v", d, err)
	}
	_, err = s.Recv()
	e := asError(t, err, protocol.CodeTimeout)
	if !strings.Contains(e.Message, "silent for 250ms") || e.Retryable {
		t.Errorf("error %+v", e)
	}
	if err := srv.WaitDisconnects(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if _, again := s.Recv(); again != err {
		t.Errorf("Recv after the error = %v, want the same error", again)
	}
	if srv.Calls() != 1 {
		t.Errorf("retried after the first delta: %d calls", srv.Calls())
	}
}

func TestStallBeforeFirstDeltaRetried(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{IdleTimeout: 250 * time.Millisecond}, script(llmtest.Reply{StallAfter: -1}))
	ds, err := run(t, c, job("x"))
	if err != nil {
		t.Fatal(err)
	}
	if content(ds) != llmtest.Answer(srv.Requests()[1]) {
		t.Errorf("content %q", content(ds))
	}
	if err := srv.WaitDisconnects(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Calls != 2 || st.Retries != 1 || st.Failures != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestCutMidStream(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{}, script(llmtest.Reply{Tokens: []string{"a", "b", "c"}, CutAfter: 2}))
	ds, err := run(t, c, job("x"))
	e := asError(t, err, protocol.CodeUpstreamError)
	if content(ds) != "ab" || e.Retryable || !strings.Contains(e.Message, "[DONE]") {
		t.Errorf("content %q, error %+v", content(ds), e)
	}
	if srv.Calls() != 1 {
		t.Errorf("%d calls, want no retry after the first delta", srv.Calls())
	}
}

func TestEndWithoutDoneIsAnError(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{}, script(llmtest.Reply{Tokens: []string{"a"}, OmitDone: true}))
	ds, err := run(t, c, job("x"))
	e := asError(t, err, protocol.CodeUpstreamError)
	if !errors.Is(e, errNoDone) || content(ds) != "a" {
		t.Errorf("content %q, error %+v", content(ds), e)
	}
}

func TestCutBeforeFirstDeltaRetried(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{}, script(llmtest.Reply{CutAfter: -1}))
	ds, err := run(t, c, job("x"))
	if err != nil {
		t.Fatal(err)
	}
	if content(ds) != llmtest.Answer(srv.Requests()[1]) || srv.Calls() != 2 {
		t.Errorf("content %q after %d calls", content(ds), srv.Calls())
	}
}

func TestCancelEndsRequest(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{}, llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Tokens: []string{"a", "b"}, StallAfter: 1}
	}))

	// Cancelled between Recvs.
	ctx, cancel := context.WithCancel(t.Context())
	s, err := c.Stream(ctx, job("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	_, err = s.Recv()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv after cancel = %v", err)
	}
	asError(t, err, protocol.CodeInternal)
	if err := srv.WaitDisconnects(t.Context(), 1); err != nil {
		t.Fatal(err)
	}

	// Cancelled while Recv waits.
	ctx, cancel = context.WithCancel(t.Context())
	s2, err := c.Stream(ctx, job("x"))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, err := s2.Recv(); err != nil {
		t.Fatal(err)
	}
	go cancel()
	if _, err := s2.Recv(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Recv during cancel = %v", err)
	}
	if err := srv.WaitDisconnects(t.Context(), 2); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Failures != 0 || st.BreakerState != BreakerClosed {
		t.Errorf("a cancellation counted as a failure: %+v", st)
	}
}

func TestCloseDuringRecv(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{}, script(llmtest.Reply{Tokens: []string{"a", "b"}, StallAfter: 1}))
	s, err := c.Stream(t.Context(), job("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	go s.Close()
	_, err = s.Recv()
	asError(t, err, protocol.CodeInternal)
	if !errors.Is(err, errClosed) {
		t.Errorf("Recv during Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := srv.WaitDisconnects(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
}

func TestCancelledBeforeStream(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := c.Stream(ctx, job("x"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Stream on a cancelled ctx = %v", err)
	}
	if srv.Calls() != 0 {
		t.Errorf("%d calls", srv.Calls())
	}
}

func TestLocalRejection(t *testing.T) {
	t.Parallel()
	c, srv := setup(t, Config{})
	j := job("x")
	j.Model = "o1-mini"
	j.MaxTokens = protocol.Int(10) // go-openai insists on max_completion_tokens for o1
	e := asError(t, streamErr(t, c, j), protocol.CodeInvalidRequest)
	if e.Retryable || srv.Calls() != 0 || c.Stats().Calls != 0 {
		t.Errorf("error %+v after %d calls", e, srv.Calls())
	}
}

func TestNilJob(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{})
	asError(t, streamErr(t, c, nil), protocol.CodeInvalidRequest)
}

// TestConnectionsAreReused: streams that end with [DONE] leave their
// connection to the next stream, instead of one connection (and one
// TIME_WAIT) per stream.
func TestConnectionsAreReused(t *testing.T) {
	t.Parallel()
	srv := llmtest.New()
	t.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		s, err := c.Stream(context.Background(), job(fmt.Sprintf("question %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = collect(t, s)
		_ = s.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Conns(); n != 1 {
		t.Errorf("20 sequential streams opened %d connections, want 1", n)
	}
}

// A json_schema format without a schema (absent or null) must not reach
// the upstream as "schema": null (go-openai's field has no omitempty).
func TestSchemalessJSONSchemaOmitsSchema(t *testing.T) {
	t.Parallel()
	for name, schema := range map[string]json.RawMessage{"absent": nil, "null": json.RawMessage(` null`)} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, srv := setup(t, Config{})
			j := job("x")
			j.ResponseFormat = &protocol.ResponseFormat{Type: "json_schema", JSONSchema: &protocol.JSONSchema{Name: "s", Schema: schema}}
			if err := streamErr(t, c, j); err != nil {
				t.Fatal(err)
			}
			got := string(srv.Requests()[0].JSON()["response_format"])
			if want := `{"type":"json_schema","json_schema":{"name":"s","strict":false}}`; !jsonEqual(t, got, want) {
				t.Errorf("response_format = %s, want %s", got, want)
			}
		})
	}
}

// Reasoning and refusal deltas come through as their own fields, in
// order, and are not content.
func TestReasoningAndRefusalDeltas(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, Config{}, llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Reasoning: []string{"hmm, ", "no"}, Refusal: []string{"I can't ", "do that."}}
	}))
	ds, err := run(t, c, job("x"))
	if err != nil {
		t.Fatal(err)
	}
	var order, reasoning, refusal, content string
	for _, d := range ds {
		reasoning += d.ReasoningContent
		refusal += d.Refusal
		content += d.Content
		switch {
		case d.ReasoningContent != "" && !strings.HasSuffix(order, "R"):
			order += "R"
		case d.Refusal != "" && !strings.HasSuffix(order, "F"):
			order += "F"
		}
	}
	if reasoning != "hmm, no" || refusal != "I can't do that." || content != "" || order != "RF" {
		t.Errorf("reasoning %q, refusal %q, content %q, order %q", reasoning, refusal, content, order)
	}
}
