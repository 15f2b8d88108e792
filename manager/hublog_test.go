package manager

import (
	"reflect"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

func chunkEntry(s string) entry { return entry{kind: entryChunk, content: s} }

func contents(es []entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		if e.kind == entryReset {
			out[i] = "<reset>"
			continue
		}
		out[i] = e.content
	}
	return out
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestHubLogSince: since returns the entries from an index on, nothing
// past the end, and base marks the first entry after the last reset.
func TestHubLogSince(t *testing.T) {
	t.Parallel()
	reset := entry{kind: entryReset}
	tests := []struct {
		name     string
		appended []entry
		from     int
		want     []string
		base     int
	}{
		{"empty", nil, 0, []string{}, 0},
		{"all", []entry{chunkEntry("a"), chunkEntry("b")}, 0, []string{"a", "b"}, 0},
		{"from the middle", []entry{chunkEntry("a"), chunkEntry("b"), chunkEntry("c")}, 1, []string{"b", "c"}, 0},
		{"at the end", []entry{chunkEntry("a")}, 1, []string{}, 0},
		{"past the end", []entry{chunkEntry("a")}, 5, []string{}, 0},
		{"a reset moves base to itself", []entry{chunkEntry("a"), chunkEntry("b"), reset, chunkEntry("c")}, 0,
			[]string{"a", "b", "<reset>", "c"}, 2},
		{"the last reset wins", []entry{chunkEntry("a"), reset, chunkEntry("b"), reset, chunkEntry("c")}, 3,
			[]string{"<reset>", "c"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := newHubLog()
			for _, e := range tt.appended {
				l.append(e)
			}
			got, wake := l.since(tt.from)
			if c := contents(got); !reflect.DeepEqual(c, tt.want) {
				t.Errorf("since(%d) = %q, want %q", tt.from, c, tt.want)
			}
			if l.base != tt.base {
				t.Errorf("base = %d, want %d", l.base, tt.base)
			}
			if wake == nil || closed(wake) {
				t.Error("since must return the open wake channel of the next append")
			}
		})
	}
}

// TestHubLogReaderHoldsSlice: a reader holding a slice without the lock
// sees no change while the writer appends, and appending to its own slice
// neither writes into the log nor is overwritten by the log's appends.
func TestHubLogReaderHoldsSlice(t *testing.T) {
	t.Parallel()
	l := newHubLog()
	for _, s := range []string{"a", "b", "c"} {
		l.append(chunkEntry(s))
	}
	if cap(l.entries) == len(l.entries) {
		t.Fatal("the log must have room to grow in place for this test")
	}
	held, _ := l.since(0)
	mine := append(held, chunkEntry("reader's"))

	l.append(chunkEntry("d"))
	l.append(entry{kind: entryReset})
	l.append(chunkEntry("e"))
	if c := contents(held); !reflect.DeepEqual(c, []string{"a", "b", "c"}) {
		t.Errorf("held slice changed to %q", c)
	}
	if c := contents(mine); !reflect.DeepEqual(c, []string{"a", "b", "c", "reader's"}) {
		t.Errorf("the reader's own slice changed to %q", c)
	}
	all, _ := l.since(0)
	if c := contents(all); !reflect.DeepEqual(c, []string{"a", "b", "c", "d", "<reset>", "e"}) {
		t.Errorf("log after a reader appended to its slice: %q", c)
	}
}

// TestHubLogWake: every append closes the wake channel readers got before
// it, and hands out a new, open one.
func TestHubLogWake(t *testing.T) {
	t.Parallel()
	l := newHubLog()
	_, w0 := l.since(0)
	_, again := l.since(0)
	if w0 != again || closed(w0) {
		t.Fatal("without an append, readers share one open wake channel")
	}
	for i, e := range []entry{chunkEntry("a"), {kind: entryProgress, stage: protocol.StageGenerating}, {kind: entryReset}, {kind: entryEnd, end: &ending{typ: protocol.EventDone}}} {
		_, before := l.since(i)
		l.append(e)
		if !closed(before) {
			t.Errorf("append %d (kind %d) did not close the wake channel", i, e.kind)
		}
		got, after := l.since(i)
		if closed(after) || len(got) != 1 || got[0].kind != e.kind {
			t.Errorf("after append %d: wake closed %v, new entries %v", i, closed(after), got)
		}
	}
}

// TestEntryEventRoundTrip: every kind of entry mirrored as a generation
// event, encoded, decoded and read back by a follower is the entry it was.
func TestEntryEventRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		e    entry
		typ  protocol.EventType
	}{
		{"chunk", entry{kind: entryChunk, content: "hello", refusal: "no", reasoning: "hmm",
			toolCalls: []protocol.ToolCall{
				{Index: intp(0), ID: "call_1", Type: "function", Function: protocol.FunctionCall{Name: "f", Arguments: `{"a":`}},
				{Index: intp(1), Function: protocol.FunctionCall{Arguments: `1}`}},
			}}, protocol.EventChunk},
		{"chunk with text only", entry{kind: entryChunk, content: "x"}, protocol.EventChunk},
		{"reset", entry{kind: entryReset}, protocol.EventReset},
		{"progress", entry{kind: entryProgress, stage: protocol.StageWaiting, reason: protocol.ReasonLLMSlot}, protocol.EventProgress},
		{"done with timings", entry{kind: entryEnd, end: &ending{typ: protocol.EventDone, finishReason: "stop",
			usage:    &protocol.Usage{PromptTokens: 3, CompletionTokens: 5, TotalTokens: 8},
			slotWait: 1500 * time.Microsecond, upstreamTTFT: 250 * time.Millisecond}}, protocol.EventDone},
		{"done from the cache", entry{kind: entryEnd, end: &ending{typ: protocol.EventDone, finishReason: "length", cached: true}}, protocol.EventDone},
		{"error", entry{kind: entryEnd, end: &ending{typ: protocol.EventError,
			err: &protocol.Error{Code: protocol.CodeUpstreamError, Message: "boom", Status: 400}}}, protocol.EventError},
		{"cancelled", entry{kind: entryEnd, end: &ending{typ: protocol.EventCancelled}}, protocol.EventCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := tt.e.event("gen-1", 7)
			if ev.Type != tt.typ || ev.ID != "gen-1" || ev.Seq != 7 || ev.V != protocol.Version {
				t.Errorf("event: type %q id %q seq %d v %d", ev.Type, ev.ID, ev.Seq, ev.V)
			}
			b, err := ev.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			decoded, err := protocol.DecodeEvent(b)
			if err != nil {
				t.Fatal(err)
			}
			if got := entryFromEvent(&decoded); !reflect.DeepEqual(got, tt.e) {
				t.Errorf("round trip through %s:\n got %+v (end %+v)\nwant %+v (end %+v)", b, got, got.end, tt.e, tt.e.end)
			}
		})
	}
}

// TestEndingTimings: a done event carries the hub's timings in
// milliseconds, and none when the hub measured nothing.
func TestEndingTimings(t *testing.T) {
	t.Parallel()
	if tm := (&ending{typ: protocol.EventDone}).timings(); tm != nil {
		t.Errorf("timings without measurements: %+v", tm)
	}
	tm := (&ending{slotWait: 2 * time.Second, upstreamTTFT: 1500 * time.Microsecond}).timings()
	if tm == nil || tm.SlotWaitMS != 2000 || tm.UpstreamTTFTMS != 1.5 || tm.QueueMS != 0 || tm.TotalMS != 0 {
		t.Errorf("timings %+v", tm)
	}
}
