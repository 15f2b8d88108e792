package llm

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/chatfleet/chatfleet/protocol"
)

// upstreamError is an error an upstream reported inside a 200 response:
// an error object as a data line (OpenAI, vLLM), a chunk carrying "error"
// and finish_reason "error" (OpenRouter), an event named "error", or a
// JSON error body.
type upstreamError struct {
	code    string // the error's code, or its type, as sent: "server_error", "502"
	status  int    // the code when it is a number in the HTTP range
	message string
	bare    bool // finish_reason "error" without an error object
}

func (e *upstreamError) Error() string {
	return "llm: the upstream reported an error in its stream: " + e.message
}

// serverCodes mark an in-stream error as the provider's failure, worth
// another attempt.
var serverCodes = []string{"server_error", "internal_error", "api_error", "overloaded", "unavailable", "bad_gateway"}

// classify maps an in-stream error onto a chatfleet error: the same codes
// as the HTTP statuses it stands for, retryable when another attempt may
// succeed.
func (e *upstreamError) classify(err error) *Error {
	k := strings.ToLower(e.code)
	out := &Error{Code: protocol.CodeUpstreamError, Err: err}
	switch {
	case e.status == 429 || strings.Contains(k, "rate_limit"):
		out.Code, out.Retryable = protocol.CodeRateLimited, true
	case e.status == 408 || strings.Contains(k, "timeout"):
		out.Code, out.Retryable = protocol.CodeTimeout, true
	case e.status >= 500 || containsAny(k, serverCodes):
		out.Code, out.Retryable = protocol.CodeUpstreamUnavailable, true
	case e.bare:
		out.Retryable = true // a provider failure without details: a broken stream
	}
	msg := "the upstream reported an error in its stream"
	if e.code != "" {
		msg += " (" + e.code + ")"
	}
	out.Message = msg + ": " + quote([]byte(e.message))
	return out
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// chunkError returns the error a decoded chunk (or JSON body) carries:
// a non-null "error", vLLM's {"object":"error",…}, or a choice that
// finished with "error".
func chunkError(c map[string]json.RawMessage) *upstreamError {
	if raw, ok := c["error"]; ok && !isNull(raw) {
		return errorObject(raw)
	}
	var object string
	if json.Unmarshal(c["object"], &object) == nil && object == "error" {
		b, _ := json.Marshal(c)
		return errorObject(b)
	}
	var choices []struct {
		FinishReason *string `json:"finish_reason"`
	}
	if json.Unmarshal(c["choices"], &choices) == nil {
		for _, ch := range choices {
			if ch.FinishReason != nil && *ch.FinishReason == "error" {
				return &upstreamError{bare: true, message: `the answer finished with "error" and no details`}
			}
		}
	}
	return nil
}

// errorObject reads an error: a string, or an object with a message, a
// code (string or number) and a type.
func errorObject(raw json.RawMessage) *upstreamError {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return &upstreamError{message: s}
	}
	var o struct {
		Message string          `json:"message"`
		Type    string          `json:"type"`
		Code    json.RawMessage `json:"code"`
	}
	if json.Unmarshal(raw, &o) != nil {
		return &upstreamError{message: string(raw)}
	}
	e := &upstreamError{message: o.Message, code: o.Type}
	var code string
	var n int
	switch {
	case isNull(o.Code):
	case json.Unmarshal(o.Code, &n) == nil:
		e.code = strconv.Itoa(n)
		if n >= 100 && n < 600 {
			e.status = n
		}
	case json.Unmarshal(o.Code, &code) == nil && code != "":
		e.code = code
	}
	if e.message == "" {
		e.message = "no message"
	}
	return e
}

// eventError reads the data of an event named "error".
func eventError(v []byte) *upstreamError {
	var c map[string]json.RawMessage
	if json.Unmarshal(v, &c) == nil {
		if e := chunkError(c); e != nil {
			return e
		}
		return errorObject(v)
	}
	return &upstreamError{message: string(v)}
}
