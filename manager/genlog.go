package manager

import (
	"github.com/chatfleet/chatfleet/protocol"
)

// entryKind is the kind of one generation log entry.
type entryKind uint8

const (
	entryChunk entryKind = iota + 1 // content and/or tool-call deltas
	entryReset                      // discard the output so far: a new attempt follows
	entryEnd                        // the generation is over
)

// entry is one step of a generation, as every subscriber sees it.
type entry struct {
	kind      entryKind
	content   string
	toolCalls []protocol.ToolCall
	refusal   string
	reasoning string
	end       *ending
}

// ending is how a generation ended.
type ending struct {
	typ          protocol.EventType // done, error or cancelled
	finishReason string
	usage        *protocol.Usage
	cached       bool
	err          *protocol.Error
}

// genLog is an append-only history with wake-ups: the broadcaster. Entries
// are never changed once appended, so readers may hold a slice of them
// without the lock; a slow reader only lags, it never blocks the writer or
// loses an entry. The generation's mutex guards it.
type genLog struct {
	entries []entry
	base    int           // first entry of the current attempt
	wake    chan struct{} // closed and replaced on every append
}

func newGenLog() genLog { return genLog{wake: make(chan struct{})} }

func (l *genLog) append(e entry) {
	if e.kind == entryReset {
		l.base = len(l.entries)
	}
	l.entries = append(l.entries, e)
	close(l.wake)
	l.wake = make(chan struct{})
}

// since returns the entries from index i on and a channel closed by the
// next append.
func (l *genLog) since(i int) ([]entry, <-chan struct{}) {
	if i >= len(l.entries) {
		return nil, l.wake
	}
	return l.entries[i:len(l.entries):len(l.entries)], l.wake
}

// event turns an entry into the generation event mirrored for remote
// followers.
func (e *entry) event(genID string, seq uint64) protocol.Event {
	ev := protocol.Event{V: protocol.Version, ID: genID, Seq: seq}
	switch e.kind {
	case entryChunk:
		ev.Type = protocol.EventChunk
		e.fillChunk(&ev)
	case entryReset:
		ev.Type = protocol.EventReset
	case entryEnd:
		ev.Type, ev.FinishReason, ev.Usage, ev.Cached, ev.Error = e.end.typ, e.end.finishReason, e.end.usage, e.end.cached, e.end.err
	}
	return ev
}

// entryFromEvent is the inverse of entry.event, for a follower.
func entryFromEvent(ev *protocol.Event) entry {
	switch ev.Type {
	case protocol.EventChunk:
		return entry{kind: entryChunk, content: ev.Content, toolCalls: ev.ToolCalls, refusal: ev.Refusal, reasoning: ev.ReasoningContent}
	case protocol.EventReset:
		return entry{kind: entryReset}
	default:
		return entry{kind: entryEnd, end: &ending{typ: ev.Type, finishReason: ev.FinishReason, usage: ev.Usage, cached: ev.Cached, err: ev.Error}}
	}
}

// fillChunk copies a chunk entry's deltas into ev.
func (e *entry) fillChunk(ev *protocol.Event) {
	ev.Content, ev.ToolCalls, ev.Refusal, ev.ReasoningContent = e.content, e.toolCalls, e.refusal, e.reasoning
}
