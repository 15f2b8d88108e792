package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestDecodeJobValid(t *testing.T) {
	t.Parallel()
	raw := `{"id":"r1","model":"m","messages":[
		{"role":"system","content":"be brief"},
		{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"http://x/y.png"}}]},
		{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
		{"role":"tool","tool_call_id":"c1","content":"42"}],
		"temperature":0,"top_p":1,"max_tokens":5,"stop":"END","seed":7,
		"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
		"tool_choice":"auto","response_format":{"type":"json_object"},
		"top_k":40,"vendor":{"x":1}}`
	j, err := DecodeJob([]byte(raw), "def", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if j.V != 1 || j.Tenant != DefaultTenant || j.Model != "m" {
		t.Errorf("defaults: v=%d tenant=%q model=%q", j.V, j.Tenant, j.Model)
	}
	if j.Temperature == nil || *j.Temperature != 0 {
		t.Errorf("temperature 0 must survive decoding as a set value, got %v", j.Temperature)
	}
	if len(j.Stop) != 1 || j.Stop[0] != "END" {
		t.Errorf("stop = %v", j.Stop)
	}
	if got := j.Messages[1].Content.Parts; len(got) != 2 || got[1].ImageURL.URL != "http://x/y.png" {
		t.Errorf("parts = %+v", got)
	}
	if !j.Messages[2].Content.Null {
		t.Errorf("null content not kept")
	}
	if string(j.Extra["top_k"]) != "40" || string(j.Extra["vendor"]) != `{"x":1}` {
		t.Errorf("extra = %v", j.Extra)
	}

	// Round trip keeps extra fields and the content forms.
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"top_k":40`, `"content":null`, `"type":"image_url"`, `"temperature":0`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("marshal lost %s: %s", want, b)
		}
	}
	j2, err := DecodeJob(b, "", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(j2)
	if string(b) != string(b2) {
		t.Errorf("round trip differs:\n%s\n%s", b, b2)
	}
}

func TestDecodeJobDefaultModel(t *testing.T) {
	t.Parallel()
	j, err := DecodeJob([]byte(`{"id":"a","messages":[{"role":"user","content":"x"}]}`), "dflt", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if j.Model != "dflt" {
		t.Errorf("model = %q", j.Model)
	}
}

func TestDecodeJobInvalid(t *testing.T) {
	t.Parallel()
	user := `"messages":[{"role":"user","content":"x"}]`
	tests := []struct {
		name, raw, field, msg string
		lim                   Limits
	}{
		{"not json", `{"id":`, "", "not valid JSON", Limits{}},
		{"nested too deeply", `{"id":"a","x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `,` + user + `}`, "", "JSON nested too deeply", Limits{}},
		{"deep brackets in a string", `{"id":"a","x":"` + strings.Repeat("[", 10001) + `",` + user + ``, "", "not valid JSON", Limits{}},
		{"not object", `[1,2]`, "", "JSON object", Limits{}},
		{"wrong type", `{"id":"a","messages":"hi"}`, "messages", "wrong type", Limits{}},
		{"wrong type nested", `{"id":"a","messages":[{"role":1}]}`, "messages.role", "wrong type", Limits{}},
		{"version", `{"v":2,"id":"a",` + user + `}`, "v", "unsupported protocol version 2", Limits{}},
		{"no id", `{` + user + `}`, "id", "empty", Limits{}},
		{"bad id", `{"id":"a.b",` + user + `}`, "id", "'.'", Limits{}},
		{"bad tenant", `{"id":"a","tenant":"a b",` + user + `}`, "tenant", "whitespace", Limits{}},
		{"no messages", `{"id":"a","messages":[]}`, "messages", "at least one", Limits{}},
		{"missing messages", `{"id":"a"}`, "messages", "at least one", Limits{}},
		{"too many messages", `{"id":"a","messages":[{"role":"user","content":"1"},{"role":"user","content":"2"}]}`, "messages", "limit is 1", Limits{MaxMessages: 1}},
		{"bad role", `{"id":"a","messages":[{"role":"wizard","content":"x"}]}`, "messages[0].role", "unknown role", Limits{}},
		{"no role", `{"id":"a","messages":[{"content":"x"}]}`, "messages[0].role", "required", Limits{}},
		{"null user content", `{"id":"a","messages":[{"role":"user","content":null}]}`, "messages[0].content", "required", Limits{}},
		{"tool without id", `{"id":"a","messages":[{"role":"tool","content":"x"}]}`, "messages[0].tool_call_id", "required", Limits{}},
		{"bad part", `{"id":"a","messages":[{"role":"user","content":[{"type":"audio"}]}]}`, "messages[0].content[0].type", "unknown part", Limits{}},
		{"temperature", `{"id":"a","temperature":2.5,` + user + `}`, "temperature", "out of range", Limits{}},
		{"top_p", `{"id":"a","top_p":-0.1,` + user + `}`, "top_p", "out of range", Limits{}},
		{"max_tokens", `{"id":"a","max_tokens":0,` + user + `}`, "max_tokens", "at least 1", Limits{}},
		{"n", `{"id":"a","n":3,` + user + `}`, "n", "n=1", Limits{}},
		{"stop", `{"id":"a","stop":["1","2","3","4","5"],` + user + `}`, "stop", "at most 4", Limits{}},
		{"tool type", `{"id":"a","tools":[{"type":"x","function":{"name":"f"}}],` + user + `}`, "tools[0].type", "unknown tool type", Limits{}},
		{"tool name", `{"id":"a","tools":[{"type":"function","function":{"name":"a b"}}],` + user + `}`, "tools[0].function.name", "[A-Za-z0-9_-]", Limits{}},
		{"tool params", `{"id":"a","tools":[{"type":"function","function":{"name":"f","parameters":[1]}}],` + user + `}`, "tools[0].function.parameters", "JSON object", Limits{}},
		{"tool_choice", `{"id":"a","tool_choice":"sometimes",` + user + `}`, "tool_choice", "unknown value", Limits{}},
		{"response_format", `{"id":"a","response_format":{"type":"yaml"},` + user + `}`, "response_format.type", "unknown type", Limits{}},
		{"json_schema name", `{"id":"a","response_format":{"type":"json_schema"},` + user + `}`, "response_format.json_schema.name", "required", Limits{}},
		{"model allow-list", `{"id":"a","model":"gpt-x",` + user + `}`, "model", "not allowed", Limits{AllowedModels: []string{"m1"}}},
		{"no model", `{"id":"a",` + user + `}`, "model", "required", Limits{}},
		{"oversized", `{"id":"a","model":"m",` + user + `}`, "", "the limit is 10", Limits{MaxJobBytes: 10}},
		{"negative timeout", `{"id":"a","model":"m","timeout_ms":-1,` + user + `}`, "timeout_ms", "negative", Limits{}},
		{"negative queue timeout", `{"id":"a","model":"m","queue_timeout_ms":-1,` + user + `}`, "queue_timeout_ms", "negative", Limits{}},
		{"unknown priority", `{"id":"a","model":"m","priority":"urgent",` + user + `}`, "priority", "want high, normal or low", Limits{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model := ""
			if !strings.Contains(tt.name, "model") {
				model = "m"
			}
			_, err := DecodeJob([]byte(tt.raw), model, tt.lim)
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("error = %v, want *Error", err)
			}
			if perr.Code != CodeInvalidRequest || perr.Field != tt.field || !strings.Contains(perr.Message, tt.msg) {
				t.Errorf("got code=%s field=%q msg=%q; want field=%q msg containing %q", perr.Code, perr.Field, perr.Message, tt.field, tt.msg)
			}
		})
	}
}

func TestNewID(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if len(id) != 22 || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
		j := Job{ID: id, Model: "m", Messages: []Message{{Role: RoleUser, Content: TextContent("x")}}}
		j.Normalize("")
		if err := j.Validate(Limits{}); err != nil {
			t.Fatalf("generated id %q invalid: %v", id, err)
		}
	}
}

func TestMsgID(t *testing.T) {
	t.Parallel()
	if got := MsgID("acme", "r1"); got != "acme.r1" {
		t.Errorf("MsgID = %q", got)
	}
	for in, want := range map[string]string{"acme.r1": "r1", "r1": "r1", "": ""} {
		if got := IDFromMsgID(in); got != want {
			t.Errorf("IDFromMsgID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEventTerminal(t *testing.T) {
	t.Parallel()
	for typ, want := range map[EventType]bool{
		EventMeta: false, EventChunk: false, EventReset: false,
		EventDone: true, EventError: true, EventCancelled: true,
	} {
		if typ.Terminal() != want {
			t.Errorf("%s.Terminal() = %v", typ, !want)
		}
	}
}

func TestEventJSON(t *testing.T) {
	t.Parallel()
	e := Event{V: 1, ID: "r1", Seq: 4, Type: EventDone, FinishReason: "stop",
		Usage: &Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5}, Cached: true,
		Timings: &Timings{QueueMS: 1.5, TTFTMS: 2, TotalMS: 9}}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"v":1,"id":"r1","seq":4,"type":"done","finish_reason":"stop","usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5},"timings":{"queue_ms":1.5,"ttft_ms":2,"total_ms":9},"cached":true}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	back, err := DecodeEvent(b)
	if err != nil || back.Seq != 4 || !back.Cached || back.Usage.TotalTokens != 5 {
		t.Errorf("decode: %+v %v", back, err)
	}
}

func TestMergeToolCalls(t *testing.T) {
	t.Parallel()
	i0, i1, bad := 0, 1, 1<<30
	calls := MergeToolCalls(nil, []ToolCall{
		{Index: &i0, ID: "c0", Type: "function", Function: FunctionCall{Name: "get"}},
		{Index: &i1, ID: "c1", Type: "function", Function: FunctionCall{Name: "put", Arguments: `{"a"`}},
	})
	calls = MergeToolCalls(calls, []ToolCall{
		{Index: &i0, Function: FunctionCall{Arguments: `{"x":1}`}},
		{Index: &i1, Function: FunctionCall{Arguments: `:2}`}},
		{Index: &bad, Function: FunctionCall{Name: "huge"}},
	})
	if len(calls) != 3 {
		t.Fatalf("got %d calls, want 3 (a bad index appends)", len(calls))
	}
	if calls[0].ID != "c0" || calls[0].Function.Arguments != `{"x":1}` || calls[1].Function.Arguments != `{"a":2}` || calls[2].Function.Name != "huge" {
		t.Errorf("merged = %+v", calls)
	}
}
