package protocol

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzDecodeJob: no input panics the decoder, every rejection is an
// invalid_request *Error, and every accepted job re-encodes to a job that is
// accepted again.
func FuzzDecodeJob(f *testing.F) {
	seeds := []string{
		`{"id":"a","model":"m","messages":[{"role":"user","content":"x"}]}`,
		`{"id":"a","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],"stop":"s"}`,
		`{"v":1,"id":"a","tenant":"t","dedupe":false,"cache":true,"timeout_ms":5,"messages":[{"role":"assistant","content":null,"tool_calls":[{"function":{"name":"f"}}]}]}`,
		`{"id":"a","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"tool_choice":{"type":"function","function":{"name":"f"}}}`,
		`{}`, `[]`, `null`, `"x"`, `{"messages":null}`, `{"id":"a","Model":"M","messages":[{"role":"user","content":"x"}]}`,
		`{"x":[[["\\\"[{"]]],"id":"a","messages":[{"role":"user","content":"x"}]}`, `{"x":[[[`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := DecodeJob(b, "m", Limits{})
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) || perr.Code != CodeInvalidRequest {
				t.Fatalf("DecodeJob error %v is not an invalid_request *Error", err)
			}
			return
		}
		again, err := json.Marshal(j)
		if err != nil {
			t.Fatalf("accepted job does not encode: %v", err)
		}
		if _, err := DecodeJob(again, "m", Limits{}); err != nil {
			t.Fatalf("re-encoded job rejected: %v\n%s", err, again)
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"a","seq":1,"type":"chunk","content":"x"}`))
	f.Add([]byte(`{"type":"error","error":{"code":"internal","message":"m"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEvent(b)
		if err != nil {
			return
		}
		if _, err := e.Marshal(); err != nil {
			t.Fatalf("decoded event does not encode: %v", err)
		}
	})
}
