package llm

import (
	"encoding/json"
	"testing"

	"github.com/chatfleet/chatfleet/protocol"
)

func TestRewriteBodyUntouchedWhenNotNeeded(t *testing.T) {
	t.Parallel()
	in := []byte(`{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}`)
	out, err := rewriteBody(in, job("x"))
	if err != nil || string(out) != string(in) {
		t.Errorf("rewrote %s to %s (%v)", in, out, err)
	}
}

func TestRewriteBodyNeverOverridesProtected(t *testing.T) {
	t.Parallel()
	j := job("x")
	j.Extra = map[string]json.RawMessage{
		"model": json.RawMessage(`"evil"`), "Messages": json.RawMessage(`[]`),
		"stream": json.RawMessage(`false`), "stream_options": json.RawMessage(`{}`),
		"top_k": json.RawMessage(`5`),
	}
	in := `{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}`
	out, err := rewriteBody([]byte(in), j)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if string(got["model"]) != `"m"` || string(got["stream"]) != `true` || string(got["top_k"]) != `5` ||
		string(got["stream_options"]) != `{"include_usage":true}` || got["Messages"] != nil || len(got) != 5 {
		t.Errorf("rewritten body %s", out)
	}
}

func TestConvertToolChoice(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`"auto"`:     `"auto"`,
		`"none"`:     `"none"`,
		`"required"`: `"required"`,
		`{"type":"function","function":{"name":"f"}}`: `{"type":"function","function":{"name":"f"}}`,
		`{"function":{"name":"f"}}`:                   `{"type":"function","function":{"name":"f"}}`,
	} {
		b, err := json.Marshal(convertToolChoice(json.RawMessage(in)))
		if err != nil || string(b) != want {
			t.Errorf("%s → %s (%v), want %s", in, b, err, want)
		}
	}
}

func TestBuildRequestStreamsWithUsage(t *testing.T) {
	t.Parallel()
	r := buildRequest(&protocol.Job{Model: "m", Messages: []protocol.Message{{Role: "user", Content: protocol.TextContent("x")}}})
	if !r.Stream || r.StreamOptions == nil || !r.StreamOptions.IncludeUsage {
		t.Errorf("request %+v", r)
	}
}
