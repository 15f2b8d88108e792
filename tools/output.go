package tools

import (
	"encoding/json"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// Output is where a handler writes a call's output. Each write is
// streamed at once to the caller as a Chunk (when it asked for a stream)
// and kept for the reply, up to the call's output limit: past it, writes
// are cut and the reply says truncated. Safe for concurrent use.
type Output struct {
	nc      *nats.Conn
	subject string
	limit   int

	mu        sync.Mutex
	buf       strings.Builder
	seq       int
	truncated bool
	closed    bool
}

// Write streams p and keeps it; it never fails (output past the limit is
// dropped), so a handler can hand Output to anything that takes an
// io.Writer.
func (o *Output) Write(p []byte) (int, error) { return o.WriteString(string(p)) }

// WriteString is Write for a string.
func (o *Output) WriteString(s string) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(s)
	if o.closed || o.truncated {
		return n, nil
	}
	if room := o.limit - o.buf.Len(); len(s) > room {
		s = CutAt(s, room)
		o.truncated = true
	}
	if s == "" {
		return n, nil
	}
	o.buf.WriteString(s)
	if o.subject != "" {
		o.seq++
		// Live output is a preview: a lost chunk is in the reply.
		data, _ := json.Marshal(Chunk{Seq: o.seq, Text: s})
		_ = o.nc.Publish(o.subject, data)
	}
	return n, nil
}

// close ends the output: later writes are dropped.
func (o *Output) close() (string, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	return o.buf.String(), o.truncated
}

// CutAt returns the longest prefix of s of at most n bytes that does not
// split a character.
func CutAt(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if n >= len(s) {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
