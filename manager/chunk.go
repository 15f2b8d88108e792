package manager

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/protocol"
)

// defaultChunkBytes caps the output one chunk event carries: large enough
// that a fast upstream costs few events, small enough that the event,
// JSON-escaped, stays far below NATS's max_payload.
const defaultChunkBytes = 64 << 10

// chunkLimitFor is the chunk cap for a server whose max_payload is
// maxPayload: JSON may spell one byte of output in six ("\u00XX"), and the
// event's other fields and headers need room too.
func chunkLimitFor(maxPayload int64) int {
	const headroom = 4 << 10
	if maxPayload <= 0 {
		return defaultChunkBytes
	}
	return int(max(min(defaultChunkBytes, (maxPayload-headroom)/6), 1<<10))
}

// chunkLimit is the chunk cap for the server this worker is connected to
// now (a reconnect may reach one with another max_payload).
func (m *Manager) chunkLimit() int { return chunkLimitFor(m.nc.MaxPayload()) }

// errToolCallHeader refuses a tool-call delta whose ID and type alone
// exceed the chunk cap: unlike a name or arguments, an ID cannot be split
// across events.
var errToolCallHeader = errors.New("a tool call's id and type are longer than a chunk event may carry")

// chunkBuilder gathers deltas into chunk entries that each carry at most
// limit bytes of output (text, refusal, reasoning, tool-call names and
// arguments together). A delta that does not fit is cut between
// characters, and full entries go to the emit function as they fill, so
// one huge delta becomes several entries and no burst of deltas ever makes
// an entry larger than the cap. Builders grow by appending, never by
// re-concatenating what they hold.
type chunkBuilder struct {
	limit int
	size  int  // output bytes held
	has   bool // holds output (an empty tool-call delta counts)

	content, refusal, reasoning strings.Builder
	calls                       []*callPiece
}

// callPiece is the tool-call delta an entry carries for one run of deltas
// of the same index: consumers merge deltas by index (protocol.MergeToolCalls),
// so merging a run here changes nothing for them.
type callPiece struct {
	index   *int
	id, typ string
	name    strings.Builder
	args    strings.Builder
}

// add takes one delta, emitting every entry that fills up on the way.
func (b *chunkBuilder) add(d *llm.Delta, emit func(entry)) error {
	b.addText(&b.reasoning, d.ReasoningContent, emit)
	b.addText(&b.content, d.Content, emit)
	b.addText(&b.refusal, d.Refusal, emit)
	for i := range d.ToolCalls {
		if err := b.addCall(&d.ToolCalls[i], emit); err != nil {
			return err
		}
	}
	return nil
}

// addText appends s to dst, emitting and starting a new entry whenever
// the cap is reached.
func (b *chunkBuilder) addText(dst *strings.Builder, s string, emit func(entry)) {
	for s != "" {
		n := b.fits(s)
		if n == 0 {
			emit(b.take())
			continue
		}
		dst.WriteString(s[:n])
		b.size += n
		b.has = true
		s = s[n:]
	}
}

// fits returns how many leading bytes of s fit in the entry, cut between
// characters; 0 when the entry must be emitted first.
func (b *chunkBuilder) fits(s string) int {
	room := b.limit - b.size
	if len(s) <= room {
		return len(s)
	}
	cut := room
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	if cut == 0 && b.size == 0 {
		// Not even one character fits an empty entry (a cap below 4
		// bytes): take one byte rather than loop.
		return 1
	}
	return cut
}

// addCall appends a tool-call delta: to the current piece when it
// continues the same call, else as a new piece; its name and arguments
// are cut like text.
func (b *chunkBuilder) addCall(tc *protocol.ToolCall, emit func(entry)) error {
	header := len(tc.ID) + len(tc.Type)
	if header > b.limit/2 {
		return errToolCallHeader
	}
	if header > b.limit-b.size {
		emit(b.take())
	}
	p := b.piece(tc.Index)
	if tc.ID != "" {
		p.id = tc.ID
	}
	if tc.Type != "" {
		p.typ = tc.Type
	}
	b.size += header
	b.has = true
	b.addCallText(tc.Index, func(p *callPiece) *strings.Builder { return &p.name }, tc.Function.Name, emit)
	b.addCallText(tc.Index, func(p *callPiece) *strings.Builder { return &p.args }, tc.Function.Arguments, emit)
	return nil
}

// addCallText appends s to the field of the current piece of index,
// continuing in a fresh piece of the same index after each emitted entry.
func (b *chunkBuilder) addCallText(index *int, field func(*callPiece) *strings.Builder, s string, emit func(entry)) {
	for s != "" {
		n := b.fits(s)
		if n == 0 {
			emit(b.take())
			continue
		}
		field(b.piece(index)).WriteString(s[:n])
		b.size += n
		s = s[n:]
	}
}

// piece returns the piece a delta of index continues: the last one when
// it has the same index, else a new one. A delta without an index always
// starts a new call, as protocol.MergeToolCalls reads it.
func (b *chunkBuilder) piece(index *int) *callPiece {
	if n := len(b.calls); n > 0 && index != nil {
		if last := b.calls[n-1]; last.index != nil && *last.index == *index {
			return last
		}
	}
	p := &callPiece{index: index}
	b.calls = append(b.calls, p)
	return p
}

// take returns the entry built so far and starts a new one.
func (b *chunkBuilder) take() entry {
	e := entry{kind: entryChunk, content: built(&b.content), refusal: built(&b.refusal), reasoning: built(&b.reasoning)}
	if len(b.calls) > 0 {
		e.toolCalls = make([]protocol.ToolCall, len(b.calls))
		for i, p := range b.calls {
			e.toolCalls[i] = protocol.ToolCall{Index: p.index, ID: p.id, Type: p.typ,
				Function: protocol.FunctionCall{Name: built(&p.name), Arguments: built(&p.args)}}
		}
		b.calls = b.calls[:0]
	}
	b.size, b.has = 0, false
	return e
}

// built returns what sb holds and resets it. The history keeps the string
// for the hub's life, so a buffer much larger than its text is
// copied to size.
func built(sb *strings.Builder) string {
	s := sb.String()
	if sb.Cap()-len(s) > len(s)/8+64 {
		s = strings.Clone(s)
	}
	sb.Reset()
	return s
}

// outputBytes counts the output a delta carries, as the chunk cap does.
func outputBytes(d *llm.Delta) int {
	n := len(d.Content) + len(d.Refusal) + len(d.ReasoningContent)
	for i := range d.ToolCalls {
		tc := &d.ToolCalls[i]
		n += len(tc.ID) + len(tc.Type) + len(tc.Function.Name) + len(tc.Function.Arguments)
	}
	return n
}
