package llm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
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
//     "stream": true) becomes one chunk, its usage and [DONE];
//   - every chunk is cut down to the fields Recv reads (slimChunk), which
//     more than halves what go-openai decodes per line.
//
// Each line, and a JSON body, is bounded by maxEventBytes. It is read by
// one goroutine at a time (go-openai's, inside Stream.Recv).
type dialectReader struct {
	src      io.Reader
	info     *StreamInfo
	in       []byte       // read, not yet split into lines; its room is read into
	readSize int          // the room a read is offered
	out      bytes.Buffer // rewritten, not yet returned
	err      error        // returned once out is drained
	mode     int
	seen     int    // bytes of in known to hold no line end
	skipLF   bool   // the last line ended with CR: a LF next belongs to it
	event    string // the current event's name
	data     bool   // a data line was read
	other    bool   // a line that is no SSE field was read
	done     bool   // [DONE] or an error was written: ignore the rest
	slim     []byte // slimChunk's buffer, reused
}

// A dialectReader's reads start at minRead bytes, enough for a paced
// upstream's events, and double up to maxRead while they fill what they
// are offered (a fast upstream): fewer, larger reads.
const (
	minRead = 4 << 10
	maxRead = 64 << 10
)

func newDialectReader(src io.Reader, info *StreamInfo) *dialectReader {
	return &dialectReader{src: src, info: info, readSize: minRead}
}

func (r *dialectReader) Read(p []byte) (int, error) {
	for r.out.Len() == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.fill()
	}
	return r.out.Read(p)
}

// fill reads once from src straight into in's room, and processes it.
func (r *dialectReader) fill() {
	if cap(r.in)-len(r.in) < r.readSize {
		r.in = slices.Grow(r.in, r.readSize)
	}
	room := r.in[len(r.in):cap(r.in)]
	n, err := r.src.Read(room)
	if n == len(room) && r.readSize < maxRead {
		r.readSize *= 2
	}
	r.in = r.in[:len(r.in)+n]
	r.process(err)
}

// bom is UTF-8's byte order mark, which some servers send first.
const bom = "\ufeff"

// process handles what was read; err is the read's error.
func (r *dialectReader) process(err error) {
	if r.mode == modeUnknown {
		r.in = r.in[:copy(r.in, bytes.TrimLeft(r.in, " \t\r\n"+bom))]
		switch {
		case len(r.in) == 0:
		case err == nil && len(r.in) < len(bom) && bytes.HasPrefix([]byte(bom), r.in):
			return // a BOM cut between reads: its rest comes next
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

// lines handles every complete line of in, and keeps the rest at its
// start; at the end of the body the rest is the last line.
func (r *dialectReader) lines(eof bool) {
	pos := 0 // where the next line starts
	for !r.done {
		if r.skipLF && pos < len(r.in) {
			if r.in[pos] == '\n' {
				pos++
			}
			r.skipLF = false
		}
		rest := r.in[pos:]
		i := lineEnd(rest[r.seen:])
		if i < 0 {
			r.seen = len(rest)
			switch {
			case len(rest) > maxEventBytes:
				r.fail(errEventTooLarge)
			case eof && len(rest) > 0:
				r.line(rest)
				pos, r.seen = len(r.in), 0
			}
			break
		}
		i += r.seen
		line := rest[:i]
		r.skipLF = rest[i] == '\r'
		pos, r.seen = pos+i+1, 0
		if len(line) > maxEventBytes {
			r.fail(errEventTooLarge)
			break
		}
		r.line(line)
	}
	if r.done {
		r.in = r.in[:0]
		return
	}
	r.in = r.in[:copy(r.in, r.in[pos:])]
}

// lineEnd returns the index of the first CR or LF in b, or -1.
func lineEnd(b []byte) int {
	lf := bytes.IndexByte(b, '\n')
	if lf < 0 {
		return bytes.IndexByte(b, '\r')
	}
	if cr := bytes.IndexByte(b[:lf], '\r'); cr >= 0 {
		return cr
	}
	return lf
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
	chunk, ok := slimChunk(r.slim[:0], v)
	if ok {
		r.slim = chunk
	} else {
		var err error
		if chunk, err = rewriteChunk(v); err != nil {
			r.fail(err)
			return
		}
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
