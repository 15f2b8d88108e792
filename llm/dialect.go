package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	openai "github.com/sashabaranov/go-openai"

	"github.com/chatfleet/chatfleet/protocol"
)

// maxEventBytes bounds one line of an event stream, and a non-streamed
// answer: a bad upstream costs at most this much memory per stream.
const maxEventBytes = 16 << 20

// errEventTooLarge ends a stream with a line (or a JSON answer) longer
// than maxEventBytes.
var errEventTooLarge = fmt.Errorf("llm: the upstream sent a line longer than %d bytes", maxEventBytes)

// errNotCompletion ends a response that is JSON but no chat completion.
var errNotCompletion = errors.New("llm: the upstream answered with JSON that is neither a stream nor a chat.completion")

// errNotStream ends a response that is neither an event stream nor JSON
// (an HTML page from a proxy, say).
var errNotStream = errors.New("llm: the upstream answered with neither an event stream nor a chat.completion")

// StreamInfo is what a stream showed of its upstream's dialect, for
// `chatfleet upstream check` and tests.
type StreamInfo struct {
	// NotStreamed reports an upstream that ignored "stream": true and
	// answered with one JSON chat.completion, which Recv returned as one
	// delta.
	NotStreamed bool
	// Comments counts the SSE comment lines (keep-alives such as
	// ": OPENROUTER PROCESSING") the upstream sent.
	Comments int
	// NoFinishReason reports a stream that ended with [DONE] without a
	// finish_reason; Recv supplied one.
	NoFinishReason bool
}

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

// Body modes of a dialectReader.
const (
	modeUnknown = iota // nothing but whitespace read yet
	modeSSE            // an event stream
	modeJSON           // one JSON document: a chat.completion or an error
)

// dialectReader turns an upstream's 2xx response body into the plain
// event stream go-openai reads — one "data: …" line per chunk, then
// "data: [DONE]" — whatever dialect the upstream speaks:
//
//   - comments (": OPENROUTER PROCESSING", ": keep-alive") and the event,
//     id and retry fields are dropped: go-openai counts every line that is
//     not data as an "empty message" and gives up after 300 in a row, and
//     would parse a comment as part of an error. Comments still reset the
//     idle timer (the body below counts every byte);
//   - LF, CRLF and CR line ends, "data:" with or without its space, a last
//     line without a line end;
//   - an error inside the stream (an error object, an "error" event,
//     finish_reason "error") ends the stream with an *upstreamError after
//     the chunks before it;
//   - "reasoning" (OpenRouter, Ollama, vLLM 0.11 on) becomes
//     "reasoning_content", and Groq's x_groq.usage the chunk's usage;
//   - a body that is one JSON chat.completion (a server that ignored
//     "stream": true) becomes one chunk, its usage and [DONE].
//
// Each line, and a JSON body, is bounded by maxEventBytes. It is read by
// one goroutine at a time (go-openai's, inside Stream.Recv).
type dialectReader struct {
	src    io.Reader
	info   *StreamInfo
	in     []byte       // read, not yet split into lines
	out    bytes.Buffer // rewritten, not yet returned
	err    error        // returned once out is drained
	mode   int
	seen   int    // bytes of in known to hold no line end
	skipLF bool   // the last line ended with CR: a LF next belongs to it
	event  string // the current event's name
	data   bool   // a data line was read
	other  bool   // a line that is no SSE field was read
	done   bool   // [DONE] or an error was written: ignore the rest
	chunk  [32 << 10]byte
}

func newDialectReader(src io.Reader, info *StreamInfo) *dialectReader {
	return &dialectReader{src: src, info: info}
}

func (r *dialectReader) Read(p []byte) (int, error) {
	for r.out.Len() == 0 {
		if r.err != nil {
			return 0, r.err
		}
		n, err := r.src.Read(r.chunk[:])
		r.in = append(r.in, r.chunk[:n]...)
		r.process(err)
	}
	return r.out.Read(p)
}

// process handles what was read; err is the read's error.
func (r *dialectReader) process(err error) {
	if r.mode == modeUnknown {
		r.in = bytes.TrimLeft(r.in, " \t\r\n\ufeff")
		switch {
		case len(r.in) == 0:
		case r.in[0] == '{':
			r.mode = modeJSON
		default:
			r.mode = modeSSE
		}
	}
	switch r.mode {
	case modeSSE:
		r.lines(err == io.EOF)
		if err == io.EOF && !r.data && r.other && !r.done {
			r.fail(errNotStream)
		}
	case modeJSON:
		if len(r.in) > maxEventBytes {
			r.fail(errEventTooLarge)
			return
		}
		if err == io.EOF {
			r.completion()
		}
	}
	if err != nil && r.err == nil {
		r.err = err
	}
}

// lines handles every complete line of in; at the end of the body the
// rest is the last line.
func (r *dialectReader) lines(eof bool) {
	for !r.done {
		if r.skipLF && len(r.in) > 0 {
			if r.in[0] == '\n' {
				r.in = r.in[1:]
			}
			r.skipLF = false
		}
		i := bytes.IndexAny(r.in[r.seen:], "\r\n")
		if i < 0 {
			r.seen = len(r.in)
			switch {
			case len(r.in) > maxEventBytes:
				r.fail(errEventTooLarge)
			case eof && len(r.in) > 0:
				r.line(r.in)
				r.in, r.seen = r.in[:0], 0
			}
			return
		}
		i += r.seen
		line := r.in[:i]
		r.skipLF = r.in[i] == '\r'
		r.in, r.seen = r.in[i+1:], 0
		if len(line) > maxEventBytes {
			r.fail(errEventTooLarge)
			return
		}
		r.line(line)
	}
	r.in = r.in[:0]
}

// line handles one line of the event stream.
func (r *dialectReader) line(l []byte) {
	switch {
	case len(l) == 0:
		r.event = "" // the end of an event
		return
	case l[0] == ':':
		r.info.Comments++
		return
	}
	field, value, _ := bytes.Cut(l, []byte(":"))
	value = bytes.TrimPrefix(value, []byte(" "))
	switch string(field) {
	case "data":
		r.data = true
		r.dataLine(bytes.TrimSpace(value))
	case "event":
		r.event = string(value)
	case "id", "retry":
	default:
		r.other = true
	}
}

// dataLine handles one data line: every line is a message of its own, as
// go-openai reads them (a JSON chunk is never split over lines).
func (r *dialectReader) dataLine(v []byte) {
	switch {
	case len(v) == 0:
		return
	case string(v) == "[DONE]":
		r.out.WriteString("data: [DONE]\n")
		r.done = true
		return
	case r.event == "error":
		r.fail(eventError(v))
		return
	}
	chunk, err := rewriteChunk(v)
	if err != nil {
		r.fail(err)
		return
	}
	r.out.WriteString("data: ")
	r.out.Write(chunk)
	r.out.WriteByte('\n')
}

// fail ends the stream with err once what was rewritten before is read.
func (r *dialectReader) fail(err error) {
	r.err, r.done = err, true
	r.in = nil
}

// completion turns a JSON body into a stream of one chunk.
func (r *dialectReader) completion() {
	chunk, err := completionChunk(r.in)
	if err != nil {
		r.fail(err)
		return
	}
	r.info.NotStreamed = true
	r.out.WriteString("data: ")
	r.out.Write(chunk)
	r.out.WriteString("\ndata: [DONE]\n")
	r.done, r.in = true, nil
}

var (
	keyError     = []byte(`"error"`)
	keyReasoning = []byte(`"reasoning"`)
	keyXGroq     = []byte(`"x_groq"`)
)

// rewriteChunk returns a chunk as go-openai reads it, or the error it
// carries. Most chunks need nothing and are returned as they are without
// being decoded.
func rewriteChunk(b []byte) ([]byte, error) {
	mayFail := bytes.Contains(b, keyError)
	rewrite := bytes.Contains(b, keyReasoning) || bytes.Contains(b, keyXGroq)
	if !mayFail && !rewrite {
		return b, nil
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(b, &c) != nil {
		return b, nil // not an object: go-openai reports it
	}
	if err := chunkError(c); err != nil {
		return nil, err
	}
	if !rewrite {
		return b, nil
	}
	changed := false
	if isNull(c["usage"]) {
		var x struct {
			Usage json.RawMessage `json:"usage"`
		}
		if json.Unmarshal(c["x_groq"], &x) == nil && !isNull(x.Usage) {
			c["usage"], changed = x.Usage, true
		}
	}
	if choices, ok := renameReasoning(c["choices"], "delta"); ok {
		c["choices"], changed = choices, true
	}
	if !changed {
		return b, nil
	}
	return json.Marshal(c)
}

// renameReasoning moves each choice's <key>.reasoning to
// reasoning_content, unless that is set already; ok reports a change.
func renameReasoning(raw json.RawMessage, key string) (json.RawMessage, bool) {
	var choices []map[string]json.RawMessage
	if json.Unmarshal(raw, &choices) != nil {
		return nil, false
	}
	changed := false
	for _, ch := range choices {
		var m map[string]json.RawMessage
		if json.Unmarshal(ch[key], &m) != nil {
			continue
		}
		var reasoning, content string
		if json.Unmarshal(m["reasoning"], &reasoning) != nil || reasoning == "" {
			continue
		}
		if _ = json.Unmarshal(m["reasoning_content"], &content); content != "" {
			continue
		}
		m["reasoning_content"] = m["reasoning"]
		delete(m, "reasoning")
		b, err := json.Marshal(m)
		if err != nil {
			continue
		}
		ch[key], changed = b, true
	}
	if !changed {
		return nil, false
	}
	b, err := json.Marshal(choices)
	return b, err == nil
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

// completionChunk converts a chat.completion into the one chunk that
// streams it, or returns the error the body carries.
func completionChunk(b []byte) ([]byte, error) {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotCompletion, err)
	}
	if err := chunkError(c); err != nil {
		return nil, err
	}
	choices, ok := renameReasoning(c["choices"], "message")
	if !ok {
		choices = c["choices"]
	}
	var resp struct {
		Choices []struct {
			Index        int                          `json:"index"`
			Message      openai.ChatCompletionMessage `json:"message"`
			FinishReason openai.FinishReason          `json:"finish_reason"`
		}
		Usage *openai.Usage `json:"usage"`
	}
	if json.Unmarshal(choices, &resp.Choices) != nil || len(resp.Choices) == 0 {
		return nil, fmt.Errorf("%w: no choices with a message", errNotCompletion)
	}
	if u, ok := c["usage"]; ok {
		_ = json.Unmarshal(u, &resp.Usage)
	}
	chunk := openai.ChatCompletionStreamResponse{Object: "chat.completion.chunk", Usage: resp.Usage}
	for _, ch := range resp.Choices {
		m := ch.Message
		d := openai.ChatCompletionStreamChoiceDelta{Role: m.Role, Content: m.Content, Refusal: m.Refusal, ReasoningContent: m.ReasoningContent}
		for i, tc := range m.ToolCalls {
			tc.Index = &i
			d.ToolCalls = append(d.ToolCalls, tc)
		}
		chunk.Choices = append(chunk.Choices, openai.ChatCompletionStreamChoice{Index: ch.Index, Delta: d, FinishReason: ch.FinishReason})
	}
	return json.Marshal(chunk)
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}
