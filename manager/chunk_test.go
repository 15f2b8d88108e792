package manager

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/protocol"
)

func intp(i int) *int { return &i }

// build feeds deltas through a chunkBuilder of limit and returns every
// entry, the last one flushed.
func build(t *testing.T, limit int, deltas []llm.Delta) []entry {
	t.Helper()
	var out []entry
	b := chunkBuilder{limit: limit}
	emit := func(e entry) { out = append(out, e) }
	for i := range deltas {
		if err := b.add(&deltas[i], emit); err != nil {
			t.Fatal(err)
		}
	}
	if b.has {
		emit(b.take())
	}
	return out
}

func entryBytes(e *entry) int {
	n := len(e.content) + len(e.refusal) + len(e.reasoning)
	for _, tc := range e.toolCalls {
		n += len(tc.ID) + len(tc.Type) + len(tc.Function.Name) + len(tc.Function.Arguments)
	}
	return n
}

// TestChunkBuilderCapsEveryEntry: whatever the deltas — one huge delta,
// a burst of small ones, multi-byte characters, tool-call arguments — no
// entry carries more than the cap, pieces are cut between characters, and
// the entries put together give back exactly what was streamed.
func TestChunkBuilderCapsEveryEntry(t *testing.T) {
	t.Parallel()
	const limit = 1000
	huge := strings.Repeat("añ€😀", 3000) // 1-, 2-, 3- and 4-byte characters
	burst := make([]llm.Delta, 400)
	for i := range burst {
		burst[i] = llm.Delta{Content: strings.Repeat("x", 37), ReasoningContent: "é"}
	}
	args := strings.Repeat(`{"k":"vé"}`, 900)
	tests := []struct {
		name   string
		deltas []llm.Delta
	}{
		{"one huge delta", []llm.Delta{{Content: huge}}},
		{"burst", burst},
		{"every field", []llm.Delta{{Content: huge, Refusal: huge[:4000], ReasoningContent: huge[:5000]}}},
		{"tool calls", []llm.Delta{
			{Content: "calling"},
			{ToolCalls: []protocol.ToolCall{{Index: intp(0), ID: "call_1", Type: "function", Function: protocol.FunctionCall{Name: "lookup"}}}},
			{ToolCalls: []protocol.ToolCall{{Index: intp(0), Function: protocol.FunctionCall{Arguments: args}}}},
			{ToolCalls: []protocol.ToolCall{{Index: intp(1), ID: "call_2", Type: "function", Function: protocol.FunctionCall{Name: "other", Arguments: args[:3000]}}}},
			{ToolCalls: []protocol.ToolCall{{Index: intp(1), Function: protocol.FunctionCall{Arguments: "}"}}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries := build(t, limit, tt.deltas)
			var content, refusal, reasoning strings.Builder
			var calls, wantCalls []protocol.ToolCall
			for i := range entries {
				e := &entries[i]
				if n := entryBytes(e); n > limit || n == 0 {
					t.Fatalf("entry %d carries %d bytes; cap %d", i, n, limit)
				}
				for _, s := range []string{e.content, e.refusal, e.reasoning} {
					if !utf8.ValidString(s) {
						t.Fatalf("entry %d cut inside a character", i)
					}
				}
				content.WriteString(e.content)
				refusal.WriteString(e.refusal)
				reasoning.WriteString(e.reasoning)
				calls = protocol.MergeToolCalls(calls, e.toolCalls)
			}
			var wantContent, wantRefusal, wantReasoning string
			for _, d := range tt.deltas {
				wantContent += d.Content
				wantRefusal += d.Refusal
				wantReasoning += d.ReasoningContent
				wantCalls = protocol.MergeToolCalls(wantCalls, d.ToolCalls)
			}
			if content.String() != wantContent || refusal.String() != wantRefusal || reasoning.String() != wantReasoning {
				t.Errorf("text changed on the way")
			}
			got, _ := json.Marshal(calls)
			want, _ := json.Marshal(wantCalls)
			if string(got) != string(want) {
				t.Errorf("tool calls = %.200s, want %.200s", got, want)
			}
		})
	}
}

// TestChunkBuilderRefusesHugeToolCallID: an ID cannot be split, so one
// longer than half the cap is a malformed stream, not a huge event.
func TestChunkBuilderRefusesHugeToolCallID(t *testing.T) {
	t.Parallel()
	b := chunkBuilder{limit: 1000}
	d := llm.Delta{ToolCalls: []protocol.ToolCall{{Index: intp(0), ID: strings.Repeat("i", 600)}}}
	if err := b.add(&d, func(entry) {}); !errors.Is(err, errToolCallHeader) {
		t.Fatalf("err = %v", err)
	}
}

// TestChunkLimit: the cap keeps a worst-case event (every byte spelled
// \u00XX) under max_payload, and is 64 KiB under NATS's default 1 MiB.
func TestChunkLimit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		payload int64
		want    int
	}{{1 << 20, 64 << 10}, {16 << 10, (16<<10 - 4<<10) / 6}, {8 << 20, 64 << 10}, {0, 64 << 10}, {2 << 10, 1 << 10}} {
		if got := chunkLimitFor(tt.payload); got != tt.want {
			t.Errorf("chunkLimitFor(%d) = %d, want %d", tt.payload, got, tt.want)
		}
	}
	worst := strings.Repeat("\x01", chunkLimitFor(16<<10))
	b, _ := (&protocol.Event{V: 1, ID: strings.Repeat("i", 128), Seq: 1 << 40, Type: protocol.EventChunk, Content: worst}).Marshal()
	if len(b) > 16<<10-512 {
		t.Errorf("worst-case event of %d bytes for a 16 KiB max_payload", len(b))
	}
}

// TestRefuses: the store errors no retry can fix.
func TestRefuses(t *testing.T) {
	t.Parallel()
	m := &Manager{nc: &nats.Conn{}}
	tooBig := &jetstream.APIError{ErrorCode: jetstream.JSErrCodeStreamMessageExceedsMaximum}
	wrongSeq := &jetstream.APIError{ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence}
	for _, tt := range []struct {
		err  error
		want bool
	}{{nats.ErrMaxPayload, true}, {tooBig, true}, {wrongSeq, false}, {nil, false}, {errors.New("io"), false}} {
		if got := m.refuses("chat.write.t.x", tt.err); got != tt.want {
			t.Errorf("refuses(%v) = %v", tt.err, got)
		}
	}
}
