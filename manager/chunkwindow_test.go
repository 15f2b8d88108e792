package manager

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/protocol"
)

// longWindow never passes during a test: its timer never fires unasked.
const longWindow = time.Hour

// windowSetup returns a chunk window with a fake emit, and what it emitted.
func windowSetup(window time.Duration, limit int) (*chunkWindow, *[]entry) {
	var out []entry
	m := &chunkWindow{window: window, b: chunkBuilder{limit: limit}, emit: func(e entry) { out = append(out, e) }}
	return m, &out
}

// feed adds deltas of text as the upstream loop does: a batch that
// arrived together, then settle.
func feed(t *testing.T, m *chunkWindow, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if err := m.add(&llm.Delta{Content: s}); err != nil {
			t.Fatal(err)
		}
	}
	m.settle()
}

func emitted(out *[]entry) []string { return contents(*out) }

func expectEmitted(t *testing.T, out *[]entry, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := emitted(out); !reflect.DeepEqual(got, want) {
		t.Errorf("emitted %q, want %q", got, want)
	}
}

// TestChunkWindowFirstDeltaAtOnce: after a quiet spell the first delta —
// or the deltas that arrived together with it — go out at once, without
// arming the timer.
func TestChunkWindowFirstDeltaAtOnce(t *testing.T) {
	t.Parallel()
	m, out := windowSetup(longWindow, 1024)
	feed(t, m, "a", "b")
	expectEmitted(t, out, "ab")
	if m.timerC() != nil || m.emitted != 1 {
		t.Errorf("timer armed %v, %d emitted", m.timerC() != nil, m.emitted)
	}
	m.stopTimer()
}

// TestChunkWindowMergesWithinWindow: deltas that follow a chunk within the
// window wait for the timer and go out as one entry; the timer is armed
// once per entry and re-armed for the next.
func TestChunkWindowMergesWithinWindow(t *testing.T) {
	t.Parallel()
	m, out := windowSetup(longWindow, 1024)
	defer m.stopTimer()
	feed(t, m, "a")
	feed(t, m, "b")
	timer := m.timerC()
	if err := m.add(&llm.Delta{ToolCalls: []protocol.ToolCall{{Index: intp(0), ID: "c1", Type: "function", Function: protocol.FunctionCall{Name: "f"}}}}); err != nil {
		t.Fatal(err)
	}
	m.settle()
	feed(t, m, "c")
	expectEmitted(t, out, "a")
	if timer == nil || m.timerC() != timer {
		t.Fatal("deltas within the window must arm the timer, once")
	}

	m.flush() // what the upstream loop does when the timer fires
	expectEmitted(t, out, "a", "bc")
	if calls := (*out)[1].toolCalls; len(calls) != 1 || calls[0].ID != "c1" {
		t.Errorf("merged entry's tool calls: %+v", calls)
	}
	if m.timerC() != nil {
		t.Error("timer still armed after the flush")
	}

	feed(t, m, "d") // within the window of the flush just done
	expectEmitted(t, out, "a", "bc")
	if m.timerC() == nil {
		t.Fatal("timer not re-armed for the next entry")
	}
	m.flush()
	expectEmitted(t, out, "a", "bc", "d")
	if m.emitted != 3 {
		t.Errorf("emitted counts %d entries, want 3", m.emitted)
	}
}

// TestChunkWindowTimerFires: the armed timer's channel is ready once the
// window has passed, the first time and when re-armed; the flush then
// sends what was merged.
func TestChunkWindowTimerFires(t *testing.T) {
	t.Parallel()
	const window = 200 * time.Millisecond
	m, out := windowSetup(window, 1024)
	defer m.stopTimer()
	feed(t, m, "a")
	want := []string{"a"}
	for _, batch := range [][]string{{"b", "c"}, {"d"}} { // NewTimer, then Reset
		feed(t, m, batch...)
		merged := strings.Join(batch, "")
		want = append(want, merged)
		if m.timerC() == nil {
			// The machine stalled longer than the window since the last
			// flush: then the merge had to go out at once.
			expectEmitted(t, out, want...)
			continue
		}
		expectEmitted(t, out, want[:len(want)-1]...)
		select {
		case <-m.timerC():
		case <-time.After(time.Minute): // a hang guard, not a measurement
			t.Fatalf("timer for %q never fired", merged)
		}
		m.flush()
		expectEmitted(t, out, want...)
	}
}

// TestChunkWindowNegative: a negative window emits one entry per delta at
// add, without settle or timer, and more when a delta exceeds the cap.
func TestChunkWindowNegative(t *testing.T) {
	t.Parallel()
	m, out := windowSetup(-1, 4)
	for _, s := range []string{"a", "b", "abcdefghij"} {
		if err := m.add(&llm.Delta{Content: s}); err != nil {
			t.Fatal(err)
		}
	}
	expectEmitted(t, out, "a", "b", "abcd", "efgh", "ij")
	m.settle()
	if m.timerC() != nil || len(*out) != 5 || m.emitted != 5 {
		t.Errorf("settle after unmerged deltas: timer %v, %d entries, %d counted", m.timerC() != nil, len(*out), m.emitted)
	}
}

// TestChunkWindowCapAtOnce: an entry that reaches the chunk cap goes out
// at once, even within the window; the rest waits for the timer.
func TestChunkWindowCapAtOnce(t *testing.T) {
	t.Parallel()
	m, out := windowSetup(longWindow, 8)
	defer m.stopTimer()
	feed(t, m, "x")
	feed(t, m, "12345")
	expectEmitted(t, out, "x")
	feed(t, m, "6789abcdef")
	expectEmitted(t, out, "x", "12345678")
	if m.timerC() == nil {
		t.Error("the rest of the entry must wait for the timer")
	}
	m.flush()
	expectEmitted(t, out, "x", "12345678", "9abcdef")
}

// TestChunkWindowFlushAtEnd: the final flush sends what is held and
// disarms the timer; a second flush sends nothing; deltas without output
// hold nothing.
func TestChunkWindowFlushAtEnd(t *testing.T) {
	t.Parallel()
	m, out := windowSetup(longWindow, 1024)
	m.stopTimer() // safe before any timer exists
	if err := m.add(&llm.Delta{FinishReason: "stop"}); err != nil {
		t.Fatal(err)
	}
	m.settle()
	m.flush()
	expectEmitted(t, out)

	feed(t, m, "a")
	feed(t, m, "b")
	m.flush()
	expectEmitted(t, out, "a", "b")
	if m.timerC() != nil {
		t.Error("timer armed after the final flush")
	}
	m.flush()
	expectEmitted(t, out, "a", "b")
	m.stopTimer()
}
