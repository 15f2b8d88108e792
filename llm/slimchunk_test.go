package llm

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"

	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

func TestSlimChunk(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, in, want string // want "" : left to rewriteChunk
	}{
		{"OpenAI content",
			`{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","system_fingerprint":"fp","choices":[{"index":0,"delta":{"content":" fox"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"q"}`,
			`{"choices":[{"delta":{"content":" fox"}}]}`},
		{"role chunk: nothing left",
			` { "choices" : [ { "delta" : { "role" : "assistant" , "content" : "" , "refusal" : null } , "index" : 0 , "finish_reason" : "" } ] } `,
			`{"choices":[{"delta":{}}]}`},
		{"order kept", `{"usage":{"total_tokens":3},"choices":[{"finish_reason":"stop","delta":{"refusal":"no","content":"a"},"index":1}]}`,
			`{"usage":{"total_tokens":3},"choices":[{"finish_reason":"stop","delta":{"content":"a","refusal":"no"},"index":1}]}`},
		{"tool_calls kept when odd", `{"choices":[{"delta":{"tool_calls":""}}]}`, `{"choices":[{"delta":{"tool_calls":""}}]}`},
		{"index 0 only", `{"choices":[{"index":0.0,"delta":{}},{"index":01}]}`, `{"choices":[{"index":0.0,"delta":{}},{"index":01}]}`},
		{"usage chunk", `{"id":"x","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":0}}}`,
			`{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":0}}}`},
		{"Azure content filter", `{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}],"created":0,"prompt_filter_results":[{"prompt_index":0}]}`,
			`{"choices":[{"delta":{"content":"Hi"}}]}`},
		{"tool calls kept as sent", `{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\":\"b\\\\\"}"}}]}}]}`,
			`{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\":\"b\\\\\"}"}}]}}]}`},
		{"reasoning renamed", `{"choices":[{"index":0,"delta":{"reasoning":"Hm","reasoning_details":[{"text":"Hm"}]}}]}`,
			`{"choices":[{"delta":{"reasoning_content":"Hm"}}]}`},
		{"reasoning over a null reasoning_content", `{"choices":[{"delta":{"reasoning_content":null,"reasoning":"Hm"}}]}`,
			`{"choices":[{"delta":{"reasoning_content":"Hm"}}]}`},
		{"reasoning_content wins", `{"choices":[{"delta":{"reasoning_content":"A","reasoning":"B"}}]}`,
			`{"choices":[{"delta":{"reasoning_content":"A"}}]}`},
		{"empty reasoning dropped", `{"choices":[{"delta":{"reasoning":"","content":"x"}}]}`,
			`{"choices":[{"delta":{"content":"x"}}]}`},
		{"odd shapes copied", `{"choices":[null,{"delta":"x"},1],"usage":[]}`, `{"choices":[null,{"delta":"x"},1],"usage":[]}`},
		{"no choices", `{"id":"x"}`, `{}`},
		{"empty", `{}`, `{}`},
		{"an error object", `{"error":{"message":"boom"}}`, ""},
		{"a null error", `{"error":null,"choices":[]}`, `{"choices":[]}`},
		{"a null error and another", `{"error":null,"choices":[{"finish_reason":"error"}]}`, ""},
		{"an error after a null one", `{"error":null,"error":{"message":"boom"}}`, ""},
		{"vLLM's error", `{"object":"error","message":"m"}`, ""},
		{"finish_reason error", `{"choices":[{"delta":{},"finish_reason":"error"}]}`, ""},
		{"Groq usage", `{"choices":[],"x_groq":{"usage":{"total_tokens":1}}}`, ""},
		{"a key in another case", `{"Choices":[]}`, ""},
		{"a choice key in another case", `{"choices":[{"Delta":{}}]}`, ""},
		{"an escaped key", `{"choi\u0063es":[]}`, ""},
		{"a non-ASCII key", `{"choiceſ":[]}`, ""},
		{"a repeated key", `{"choices":[],"choices":[]}`, ""},
		{"a repeated delta key", `{"choices":[{"delta":{"content":"a","content":"b"}}]}`, ""},
		{"not an object", `[{"choices":[]}]`, ""},
		{"not JSON", `hello`, ""},
		{"cut short", `{"choices":[{"delta":{"content":"a`, ""},
		{"trailing bytes", `{"choices":[]} x`, ""},
		{"a missing comma", `{"id":"a" "choices":[]}`, ""},
		{"a missing colon", `{"id" "a"}`, ""},
		{"too deep", `{"x":` + strings.Repeat("[", maxSlimDepth+1) + strings.Repeat("]", maxSlimDepth+1) + `}`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prefix := []byte("data: ")
			got, ok := slimChunk(prefix, []byte(tt.in))
			switch {
			case tt.want == "" && (ok || string(got) != "data: "):
				t.Errorf("slimmed to %s, want it left to rewriteChunk", got)
			case tt.want != "" && (!ok || string(got) != "data: "+tt.want):
				t.Errorf("got %s (%v)\nwant data: %s", got, ok, tt.want)
			}
		})
	}
}

// TestUnreadFieldsUnchecked: through the client, a chunk whose unread
// fields have the wrong types (go-openai's decode would fail on them) is
// read, and one whose read fields have the wrong types still fails.
func TestUnreadFieldsUnchecked(t *testing.T) {
	t.Parallel()
	odd := `data: {"id":5,"created":"yesterday","model":["m"],"choices":[{"index":0,"delta":{"content":"a"},"logprobs":"none"}]}` + "\n\n"
	c, _ := setup(t, Config{}, script(llmtest.Reply{Raw: []string{odd, finishStop, done}}))
	ds, err := run(t, c, job("x"))
	if err != nil || content(ds) != "a" || ds[len(ds)-1].FinishReason != "stop" {
		t.Errorf("deltas %+v, %v", ds, err)
	}

	bad := `data: {"id":"c","choices":[{"index":0,"delta":{"content":5}}]}` + "\n\n"
	c, _ = setup(t, Config{MaxRetries: -1}, script(llmtest.Reply{Raw: []string{bad, finishStop, done}}))
	asError(t, streamErr(t, c, job("x")), protocol.CodeUpstreamError)
}

// TestNullErrorFirst: a chunk that starts with "error": null (no error)
// is read; go-openai alone takes any line starting {"error": for an error
// and ended the stream as malformed.
func TestNullErrorFirst(t *testing.T) {
	t.Parallel()
	line := `data: {"error":null,"id":"c","choices":[{"index":0,"delta":{"content":"a"}}]}` + "\n\n"
	c, _ := setup(t, Config{MaxRetries: -1}, script(llmtest.Reply{Raw: []string{line, finishStop, done}}))
	ds, err := run(t, c, job("x"))
	if err != nil || content(ds) != "a" || ds[len(ds)-1].FinishReason != "stop" {
		t.Errorf("deltas %+v, %v", ds, err)
	}
}

// FuzzSlimChunk: a slimmed chunk reads as the same delta as the chunk
// rewriteChunk would hand go-openai, and is JSON when the chunk was; a
// chunk rewriteChunk fails is never slimmed.
func FuzzSlimChunk(f *testing.F) {
	for _, d := range llmtest.Dialects() {
		for _, line := range bytes.Split(d.Body, []byte("\n")) {
			if v, ok := bytes.CutPrefix(bytes.TrimSpace(line), []byte("data:")); ok {
				f.Add(bytes.TrimSpace(v))
			}
		}
	}
	for _, e := range openAIEvents(2) {
		f.Add(bytes.TrimSpace(bytes.TrimPrefix(e, []byte("data: "))))
	}
	f.Add([]byte(`{"choices":[{"delta":{"reasoning":"\u0041","reasoning_content":""}}],"usage":{"total_tokens":"x"}}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, ok := slimChunk(nil, in)
		if !ok {
			return
		}
		want, err := rewriteChunk(in)
		if err != nil {
			t.Fatalf("slimmed a chunk rewriteChunk fails (%v): %s", err, in)
		}
		if json.Valid(in) && !json.Valid(out) {
			t.Fatalf("%s\nslimmed to invalid JSON %s", in, out)
		}
		var a, b openai.ChatCompletionStreamResponse
		if json.Unmarshal(want, &a) != nil {
			return
		}
		if err := json.Unmarshal(out, &b); err != nil {
			t.Fatalf("%s\nslimmed to %s: %v", in, out, err)
		}
		da, oka := toDelta(a)
		db, okb := toDelta(b)
		if oka != okb || !reflect.DeepEqual(da, db) {
			t.Fatalf("%s\nslimmed to %s\ndelta %+v, want %+v", in, out, db, da)
		}
	})
}

// BenchmarkSlimChunk: one content chunk as OpenAI sends it.
func BenchmarkSlimChunk(b *testing.B) {
	in := bytes.TrimSpace(bytes.TrimPrefix(openAIEvents(1)[1], []byte("data: ")))
	b.SetBytes(int64(len(in)))
	var out []byte
	cpu := processCPU()
	for b.Loop() {
		var ok bool
		if out, ok = slimChunk(out[:0], in); !ok {
			b.Fatal("not slimmed")
		}
	}
	b.ReportMetric(float64((processCPU()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// TestSlimChunkLongStrings: strings longer than str's byte-by-byte start,
// with escapes on either side of it and at its end, read whole.
func TestSlimChunkLongStrings(t *testing.T) {
	t.Parallel()
	for _, content := range []string{
		strings.Repeat("a", 31) + `\"` + strings.Repeat("b", 40),
		strings.Repeat("a", 32) + `\\`,
		strings.Repeat("a", 33) + `\"\\\"` + strings.Repeat(`\\`, 20) + `\"`,
		strings.Repeat("x", 100_000),
	} {
		in := `{"id":"` + content + `","choices":[{"delta":{"content":"` + content + `"}}]}`
		want := `{"choices":[{"delta":{"content":"` + content + `"}}]}`
		if got, ok := slimChunk(nil, []byte(in)); !ok || string(got) != want {
			t.Errorf("content of %d bytes: %.200s (%v)", len(content), got, ok)
		}
	}
	for _, cut := range []string{`{"id":"` + strings.Repeat("a", 40) + `\`, `{"id":"` + strings.Repeat("a", 40) + `\"}`} {
		if got, ok := slimChunk(nil, []byte(cut)); ok {
			t.Errorf("%q slimmed to %s", cut, got)
		}
	}
}
