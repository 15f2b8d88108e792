package manager

import (
	"encoding/json"
	"testing"

	"github.com/chatfleet/chatfleet/protocol"
)

func mustJob(t *testing.T, raw string) *protocol.Job {
	t.Helper()
	j, err := protocol.DecodeJob([]byte(raw), "default-model", protocol.Limits{})
	if err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return j
}

func mustKey(t *testing.T, raw string) string {
	t.Helper()
	k, err := Key(mustJob(t, raw))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

const base = `{"id":"a","model":"m","temperature":0.7,"messages":[{"role":"user","content":"hi"}],
	"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"type":"string"}}}}}]}`

// Jobs that differ only in form, or in fields that cannot change the
// answer, share a key.
func TestKeySameAnswer(t *testing.T) {
	t.Parallel()
	want := mustKey(t, base)
	same := map[string]string{
		"field order and whitespace": `{ "messages" : [ { "content":"hi", "role":"user" } ], "temperature":0.7, "model":"m", "id":"a",
			"tools":[{"function":{"parameters":{"properties":{"x":{"type":"string"}},"type":"object"},"name":"f"},"type":"function"}] }`,
		"number spelling": `{"id":"a","model":"m","temperature":0.70,"messages":[{"role":"user","content":"hi"}],
			"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"type":"string"}}}}}]}`,
		"chatfleet control fields": `{"v":1,"id":"other","dedupe":true,"cache":false,"timeout_ms":5000,"priority":"high","model":"m","temperature":0.7,
			"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"type":"string"}}}}}]}`,
		"stream options": `{"id":"a","model":"m","temperature":0.7,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}],
			"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"type":"string"}}}}}]}`,
		"explicit default tenant": `{"id":"a","tenant":"default","model":"m","temperature":0.7,"messages":[{"role":"user","content":"hi"}],
			"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"x":{"type":"string"}}}}}]}`,
	}
	for name, raw := range same {
		if got := mustKey(t, raw); got != want {
			t.Errorf("%s: key differs", name)
		}
	}
}

// Any real difference changes the key: a loose fingerprint would hand one
// caller another caller's answer.
func TestKeyDifferentAnswer(t *testing.T) {
	t.Parallel()
	var j map[string]any
	if err := json.Unmarshal([]byte(base), &j); err != nil {
		t.Fatal(err)
	}
	variants := map[string]func(map[string]any){
		"prompt": func(j map[string]any) { j["messages"].([]any)[0].(map[string]any)["content"] = "hi!" },
		"role":   func(j map[string]any) { j["messages"].([]any)[0].(map[string]any)["role"] = "system" },
		"another message": func(j map[string]any) {
			j["messages"] = append(j["messages"].([]any), map[string]any{"role": "user", "content": "hi"})
		},
		"model":              func(j map[string]any) { j["model"] = "m2" },
		"no model (default)": func(j map[string]any) { delete(j, "model") },
		"temperature":        func(j map[string]any) { j["temperature"] = 0.71 },
		"temperature unset":  func(j map[string]any) { delete(j, "temperature") },
		"top_p":              func(j map[string]any) { j["top_p"] = 0.5 },
		"max_tokens":         func(j map[string]any) { j["max_tokens"] = 10 },
		"stop":               func(j map[string]any) { j["stop"] = []any{"x"} },
		"seed":               func(j map[string]any) { j["seed"] = 1 },
		"tenant":             func(j map[string]any) { j["tenant"] = "other" },
		"tool name": func(j map[string]any) {
			j["tools"].([]any)[0].(map[string]any)["function"].(map[string]any)["name"] = "g"
		},
		"tool schema": func(j map[string]any) {
			j["tools"].([]any)[0].(map[string]any)["function"].(map[string]any)["parameters"] = map[string]any{"type": "object"}
		},
		"no tools":        func(j map[string]any) { delete(j, "tools") },
		"tool_choice":     func(j map[string]any) { j["tool_choice"] = "required" },
		"response_format": func(j map[string]any) { j["response_format"] = map[string]any{"type": "json_object"} },
		"extra field":     func(j map[string]any) { j["top_k"] = 40 },
		"user":            func(j map[string]any) { j["user"] = "u1" },
	}
	want := mustKey(t, base)
	seen := map[string]string{want: "base"}
	for name, change := range variants {
		b, _ := json.Marshal(j)
		var c map[string]any
		_ = json.Unmarshal(b, &c)
		change(c)
		b, _ = json.Marshal(c)
		got := mustKey(t, string(b))
		if prev, dup := seen[got]; dup {
			t.Errorf("%s shares a key with %s", name, prev)
		}
		seen[got] = name
	}
}

func TestCanonicalNumber(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"1": "1", "1.0": "1", "1e0": "1", "0.7": "7/10", "0.70": "7/10", "7e-1": "7/10", "-0": "0", "-0.0": "0",
		"12345678901234567890": "12345678901234567890", "12345678901234567891": "12345678901234567891",
		"0.1000000000000000000001": "1000000000000000000001/10000000000000000000000",
		"1e999999999":              "1e999999999", "2E-3": "1/500",
	} {
		if got := canonicalNumber(json.Number(in)); got != want {
			t.Errorf("canonicalNumber(%s) = %s, want %s", in, got, want)
		}
	}
}
