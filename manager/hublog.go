package manager

import (
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// entryKind is the kind of one entry of a hub's log.
type entryKind uint8

const (
	entryChunk    entryKind = iota + 1 // content and/or tool-call deltas
	entryReset                         // discard the output so far: a new generation (or a restart) follows
	entryEnd                           // the hub's answer is over
	entryProgress                      // what the hub waits for: a stage change, no output
	entryTool                          // a step of a fleet tool call the leader runs (toolloop.go)
)

// entry is one step of a hub's answer, as every subscriber sees it.
type entry struct {
	kind      entryKind
	content   string
	toolCalls []protocol.ToolCall
	refusal   string
	reasoning string
	end       *ending
	stage     string // of a progress entry: protocol.StageWaiting, …
	reason    string // of a waiting stage: protocol.ReasonLLMSlot, …
	tool      *protocol.ToolEvent
}

// ending is how a hub's answer ended.
type ending struct {
	typ          protocol.EventType // done, error or cancelled
	finishReason string
	usage        *protocol.Usage
	cached       bool
	err          *protocol.Error
	slotWait     time.Duration // waited for an upstream slot (leaders)
	upstreamTTFT time.Duration // request sent → first output delta (leaders)
	shared       bool          // the generation served other requests too (leaders; billing.go)
}

// timings is the part of a done event's timings the hub knows.
func (e *ending) timings() *protocol.Timings {
	if e.slotWait == 0 && e.upstreamTTFT == 0 {
		return nil
	}
	return &protocol.Timings{SlotWaitMS: ms(e.slotWait), UpstreamTTFTMS: ms(e.upstreamTTFT)}
}

// hubLog is a hub's append-only history, across its generations, with
// wake-ups: the broadcaster. Entries
// are never changed once appended, so readers may hold a slice of them
// without the lock; a slow reader only lags, it never blocks the writer or
// loses an entry. The hub's mutex guards it.
type hubLog struct {
	entries []entry
	base    int           // first entry of the current output (after the last reset)
	wake    chan struct{} // closed and replaced on every append
}

func newHubLog() hubLog { return hubLog{wake: make(chan struct{})} }

func (l *hubLog) append(e entry) {
	if e.kind == entryReset {
		l.base = len(l.entries)
	}
	l.entries = append(l.entries, e)
	close(l.wake)
	l.wake = make(chan struct{})
}

// since returns the entries from index i on and a channel closed by the
// next append.
func (l *hubLog) since(i int) ([]entry, <-chan struct{}) {
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
	case entryProgress:
		ev.Type, ev.Stage, ev.Reason = protocol.EventProgress, e.stage, e.reason
	case entryTool:
		ev.Type, ev.Tool = protocol.EventTool, e.tool
	case entryEnd:
		ev.Type, ev.FinishReason, ev.Usage, ev.Cached, ev.Error = e.end.typ, e.end.finishReason, e.end.usage, e.end.cached, e.end.err
		ev.Timings = e.end.timings()
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
	case protocol.EventProgress:
		return entry{kind: entryProgress, stage: ev.Stage, reason: ev.Reason}
	case protocol.EventTool:
		return entry{kind: entryTool, tool: ev.Tool}
	default:
		end := &ending{typ: ev.Type, finishReason: ev.FinishReason, usage: ev.Usage, cached: ev.Cached, err: ev.Error}
		if t := ev.Timings; t != nil {
			end.slotWait = time.Duration(t.SlotWaitMS * float64(time.Millisecond))
			end.upstreamTTFT = time.Duration(t.UpstreamTTFTMS * float64(time.Millisecond))
		}
		return entry{kind: entryEnd, end: end}
	}
}

// fillChunk copies a chunk entry's deltas into ev.
func (e *entry) fillChunk(ev *protocol.Event) {
	ev.Content, ev.ToolCalls, ev.Refusal, ev.ReasoningContent = e.content, e.toolCalls, e.refusal, e.reasoning
}
