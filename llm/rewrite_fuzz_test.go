package llm

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/chatfleet/chatfleet/protocol"
)

// FuzzRewrite: for any job the worker accepts, the body go-openai writes
// for it rewritten is valid JSON with what chatfleet sets: the job's
// model and messages (empty contents included), streaming with usage,
// every sampling parameter the job set with its exact value, no null
// schema, and every extra field but the protected ones. No body, however
// malformed, panics the rewrite.
func FuzzRewrite(f *testing.F) {
	for _, s := range [][2]string{
		{`{"id":"a","model":"m","messages":[{"role":"user","content":"x"}]}`, `{}`},
		{`{"id":"a","messages":[{"role":"user","content":""}],"temperature":0,"top_p":0,"presence_penalty":0,"frequency_penalty":-0}`, `null`},
		{`{"id":"a","messages":[{"role":"system","content":""},{"role":"user","content":[]},{"role":"assistant","content":null,"tool_calls":[{"function":{"name":"f"}}]}]}`, `{"messages":[null]}`},
		{`{"id":"a","messages":[{"role":"user","content":"x"}],"temperature":1.1234567890123457,"top_p":1e-320}`, `[]`},
		{`{"id":"a","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":null}}}`, `{"response_format":null}`},
		{`{"id":"a","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object"}}}}`, `{"response_format":{"json_schema":null}}`},
		{`{"id":"a","messages":[{"role":"user","content":"x"}],"top_k":40,"Stream":false,"STREAM_OPTIONS":{},"logprobs":true,"x":{"a":[1, 2.50]}}`, `{"messages":"x"}`},
		{`{"id":"a","messages":[{"role":"user","content":[{"type":"text","text":""},{"type":"image_url","image_url":{"url":"u"}}]}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"auto","stop":"s","seed":1,"max_tokens":5,"logit_bias":{"1":2}}`, `{"x":`},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, jobJSON, body []byte) {
		j, err := protocol.DecodeJob(jobJSON, "default-model", protocol.Limits{})
		if err != nil {
			return
		}
		_, _ = rewriteBody(body, j) // any body: an error at worst

		in, err := json.Marshal(buildRequest(j))
		if err != nil {
			t.Fatalf("go-openai cannot write the request of an accepted job: %v\n%s", err, jobJSON)
		}
		out, err := rewriteBody(in, j)
		if err != nil {
			t.Fatalf("rewrite of a valid request: %v\njob %s\nbody %s", err, jobJSON, in)
		}
		if !json.Valid(out) {
			t.Fatalf("rewrite wrote invalid JSON: %s", out)
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(out, &got); err != nil || got == nil {
			t.Fatalf("rewritten body is not an object (%v): %s", err, out)
		}
		checkRewritten(t, j, got, out)
	})
}

// checkRewritten checks the fields chatfleet sets in a rewritten body.
func checkRewritten(t *testing.T, j *protocol.Job, got map[string]json.RawMessage, out []byte) {
	t.Helper()
	same := func(field string, want any) {
		t.Helper()
		if !sameJSON(got[field], want) {
			t.Errorf("%s = %s, want %v\nbody %s", field, got[field], want, out)
		}
	}
	same("model", j.Model)
	same("stream", true)
	same("stream_options", map[string]any{"include_usage": true})
	for _, p := range []struct {
		name string
		v    *float64
	}{{"temperature", j.Temperature}, {"top_p", j.TopP}, {"presence_penalty", j.PresencePenalty}, {"frequency_penalty", j.FrequencyPenalty}} {
		if p.v == nil {
			continue
		}
		var v float64
		if err := json.Unmarshal(got[p.name], &v); err != nil || v != *p.v {
			t.Errorf("%s = %s, want exactly %v\nbody %s", p.name, got[p.name], *p.v, out)
		}
	}

	var msgs []map[string]json.RawMessage
	if err := json.Unmarshal(got["messages"], &msgs); err != nil || len(msgs) != len(j.Messages) {
		t.Fatalf("messages %s (%v), want %d", got["messages"], err, len(j.Messages))
	}
	for i, m := range j.Messages {
		c, ok := msgs[i]["content"]
		switch {
		case m.Content.Null:
			if ok && string(c) != "null" {
				t.Errorf("message %d: content %s, want none", i, c)
			}
		case m.Content.Parts != nil:
			var parts []any
			if err := json.Unmarshal(c, &parts); err != nil || len(parts) != len(m.Content.Parts) {
				t.Errorf("message %d: content %s, want %d parts", i, c, len(m.Content.Parts))
			}
		default:
			if !sameJSON(c, m.Content.Text) {
				t.Errorf("message %d: content %s, want %q", i, c, m.Content.Text)
			}
		}
	}

	if rf := j.ResponseFormat; rf != nil && rf.JSONSchema != nil {
		var format struct {
			JSONSchema map[string]json.RawMessage `json:"json_schema"`
		}
		if err := json.Unmarshal(got["response_format"], &format); err != nil {
			t.Fatalf("response_format %s: %v", got["response_format"], err)
		}
		if schema, ok := format.JSONSchema["schema"]; ok != hasSchema(rf.JSONSchema) || string(schema) == "null" {
			t.Errorf("response_format %s for a job schema %s", got["response_format"], rf.JSONSchema.Schema)
		}
	}

	for k, v := range j.Extra {
		if protectedFields[strings.ToLower(k)] {
			if _, ok := got[k]; ok && k != strings.ToLower(k) {
				t.Errorf("protected extra field %q written: %s", k, got[k])
			}
			continue
		}
		if !sameJSON(got[k], v) {
			t.Errorf("extra field %q = %s, want %s", k, got[k], v)
		}
	}
}

// sameJSON reports whether raw holds the same JSON value as want (a Go
// value, or json.RawMessage).
func sameJSON(raw json.RawMessage, want any) bool {
	if raw == nil {
		return false
	}
	w, err := json.Marshal(want)
	if err != nil {
		return false
	}
	var a, b any
	if json.Unmarshal(raw, &a) != nil || json.Unmarshal(w, &b) != nil {
		return false
	}
	return reflect.DeepEqual(a, b)
}
