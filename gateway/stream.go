package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// eventPos is a position in a reply as SSE ids name it: chatfleet event
// seq, and the index of the OpenAI chunk made from it (one event may make
// several chunks, and some events none). The id "12" is chunk 0 of event
// 12, "12.1" its chunk 1. An event of a writer after a takeover (epoch 2
// and up: the job's delivery that wrote it) is prefixed with it: "2:12.1".
// The first delivery's ids have no prefix, as before epochs.
type eventPos struct {
	seq   uint64
	k     int
	epoch uint64 // the writer's; 1 for ids without one
}

// none reports whether p is no position: a stream from the start.
func (p eventPos) none() bool { return p.seq == 0 && p.k == 0 }

func (p eventPos) String() string {
	id := strconv.FormatUint(p.seq, 10)
	if p.k != 0 {
		id += "." + strconv.Itoa(p.k)
	}
	if p.epoch > 1 {
		id = strconv.FormatUint(p.epoch, 10) + ":" + id
	}
	return id
}

// parsePos reads an SSE id ("12", "12.1" or "2:12.1").
func parsePos(s string) (eventPos, bool) {
	p := eventPos{epoch: 1}
	rest := strings.TrimSpace(s)
	if epoch, pos, ok := strings.Cut(rest, ":"); ok {
		e, err := strconv.ParseUint(epoch, 10, 64)
		if err != nil || e == 0 {
			return eventPos{}, false
		}
		p.epoch, rest = e, pos
	}
	seq, k, hasK := strings.Cut(rest, ".")
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return eventPos{}, false
	}
	p.seq = n
	if hasK {
		if p.k, err = strconv.Atoi(k); err != nil || p.k < 0 {
			return eventPos{}, false
		}
	}
	return p, true
}

// sse writes one request's reply as OpenAI's chat.completion.chunk
// stream. Chunks at or before after were sent before (a resumed stream)
// and are skipped.
type sse struct {
	w            http.ResponseWriter
	rc           *http.ResponseController
	stall        time.Duration // the longest one write may wait for the client
	id           string        // chatcmpl-<request id>
	model        string
	created      int64
	includeUsage bool
	after        eventPos
	epoch        uint64 // the writer of the event being written, for its ids
	wrote        bool   // response headers written
	output       bool   // content, a refusal, reasoning or tool calls reached the client
	buf          []byte // one SSE event being written, reused
}

// writeHeader writes the response headers; the next flush sends them,
// with the first event when it follows at once.
func (s *sse) writeHeader() {
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	s.w.WriteHeader(http.StatusOK)
	s.wrote = true
}

// start sends the response headers now, for a stream whose first event
// may be long in coming.
func (s *sse) start() error {
	s.writeHeader()
	return s.rc.Flush()
}

// event writes what ev means for the client and flushes it: one write to
// the connection per fleet event, however many SSE events it makes (the
// last chunk, the usage chunk and [DONE] go together). done reports the
// end of the stream (after done, error, cancelled, or a reset the client
// cannot be shown).
func (s *sse) event(ev *protocol.Event) (done bool, err error) {
	if s.stall > 0 {
		// A client that stopped reading fails this write: it went away.
		_ = s.rc.SetWriteDeadline(time.Now().Add(s.stall))
	}
	done, err = s.write(ev)
	if err != nil {
		return done, err
	}
	return done, s.rc.Flush()
}

// write writes what ev means for the client, unflushed.
func (s *sse) write(ev *protocol.Event) (done bool, err error) {
	switch ev.Type {
	case protocol.EventMeta:
		if ev.Model != "" {
			s.model = ev.Model
		}
		return false, s.chunks(ev.Seq, s.chunk(delta{Role: "assistant", Content: ptr("")}, nil, nil))
	case protocol.EventChunk:
		d := delta{ToolCalls: ev.ToolCalls, ReasoningContent: ev.ReasoningContent}
		if ev.Content != "" {
			d.Content = &ev.Content
		}
		if ev.Refusal != "" {
			d.Refusal = &ev.Refusal
		}
		s.output = true
		return false, s.chunks(ev.Seq, s.chunk(d, nil, nil))
	case protocol.EventTool:
		// OpenAI's stream has no place for a tool the server runs: a
		// comment keeps the connection alive, and SDKs skip it.
		if t := ev.Tool; t != nil && t.Final() {
			return false, s.comment(fmt.Sprintf("tool %s %s", t.Name, t.State))
		}
		return false, nil
	case protocol.EventProgress:
		// A comment: the connection is alive, and SDKs skip it.
		return false, s.comment(fmt.Sprintf("progress %s %s", ev.Stage, ev.Reason))
	case protocol.EventReset:
		if !s.output {
			return false, nil // nothing to take back
		}
		// The client has part of an answer the fleet restarted (a
		// failover): splicing the new one after it would be a wrong
		// answer, so the stream ends with an error instead — without an
		// id: a client that resumes (an EventSource does at once) resumes
		// from its last chunk, meets this reset again after its output,
		// and gets this error again. (A client that had the reset before
		// any output has no chunk before it.)
		return true, s.fail(0, newError(http.StatusBadGateway, "server_error", "stream_reset", "",
			"the fleet restarted this answer after a failover; the partial output is void: read the whole answer again with GET /v1/chat/completions/"+s.requestID()+"/stream once it has finished, or retry"))
	case protocol.EventDone:
		fin := ev.FinishReason
		if fin == "" {
			fin = "stop"
		}
		cs := []chunk{s.chunk(delta{}, &fin, nil)}
		if s.includeUsage {
			u := ev.Usage
			if u == nil {
				u = &protocol.Usage{}
			}
			cs = append(cs, chunk{ID: s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.model, Choices: []chunkChoice{}, Usage: u})
		}
		if err := s.chunks(ev.Seq, cs...); err != nil {
			return true, err
		}
		return true, s.data([]byte("[DONE]"), "")
	case protocol.EventError:
		perr := ev.Error
		if perr == nil {
			perr = &protocol.Error{Code: protocol.CodeInternal, Message: "error event without error"}
		}
		return true, s.fail(ev.Seq, fromProtocol(perr))
	case protocol.EventCancelled:
		return true, s.fail(ev.Seq, errCancelled)
	}
	return false, nil // an event type this gateway does not know: ignored
}

// chunk makes one chunk of the request's only choice.
func (s *sse) chunk(d delta, finish *string, usage *protocol.Usage) chunk {
	return chunk{ID: s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.model,
		Choices: []chunkChoice{{Index: 0, Delta: d, FinishReason: finish}}, Usage: usage}
}

// chunks writes the chunks of event seq, each with its id, skipping those
// the client had.
func (s *sse) chunks(seq uint64, cs ...chunk) error {
	for k := range cs {
		pos := eventPos{seq: seq, k: k, epoch: s.epoch}
		if !s.after.before(pos) {
			continue
		}
		b, err := json.Marshal(cs[k])
		if err != nil {
			return err
		}
		if err := s.data(b, pos.String()); err != nil {
			return err
		}
	}
	return nil
}

// before reports whether p comes before q in the reply (whoever wrote
// them).
func (p eventPos) before(q eventPos) bool {
	return p.seq < q.seq || (p.seq == q.seq && p.k < q.k)
}

// fail ends the stream with an error event, as OpenAI sends one
// mid-stream, and flushes it. The error of event seq has its id (and a
// resumed client that had it gets nothing); one that no event carries
// (seq 0: the reply could not be read) has none, and is always written.
func (s *sse) fail(seq uint64, e *httpError) error {
	var id string
	if seq > 0 {
		pos := eventPos{seq: seq, epoch: s.epoch}
		if !s.after.before(pos) {
			return nil
		}
		id = pos.String()
	}
	b, err := json.Marshal(e.body)
	if err != nil {
		return err
	}
	if err := s.data(b, id); err != nil {
		return err
	}
	return s.rc.Flush()
}

// data writes one SSE data event, unflushed.
func (s *sse) data(b []byte, id string) error {
	s.buf = s.buf[:0]
	if id != "" {
		s.buf = append(append(append(s.buf, "id: "...), id...), '\n')
	}
	s.buf = append(append(append(s.buf, "data: "...), b...), "\n\n"...)
	_, err := s.w.Write(s.buf)
	return err
}

// comment writes an SSE comment, unflushed.
func (s *sse) comment(text string) error {
	_, err := s.w.Write([]byte(": " + strings.TrimSpace(text) + "\n\n"))
	return err
}

func (s *sse) requestID() string { return strings.TrimPrefix(s.id, "chatcmpl-") }
