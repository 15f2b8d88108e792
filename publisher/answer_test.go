package publisher

import (
	"testing"

	"github.com/chatfleet/chatfleet/protocol"
)

// A reset discards everything streamed before it, reasoning and refusal
// included.
func TestAnswerResetDiscardsEverything(t *testing.T) {
	var a Answer
	for _, ev := range []protocol.Event{
		{Type: protocol.EventChunk, Content: "par", Refusal: "no", ReasoningContent: "thinking"},
		{Type: protocol.EventReset},
		{Type: protocol.EventChunk, ReasoningContent: "again "},
		{Type: protocol.EventChunk, ReasoningContent: "then", Content: "answer"},
		{Type: protocol.EventDone, FinishReason: "stop"},
	} {
		a.apply(&ev)
	}
	if a.Content != "answer" || a.Reasoning != "again then" || a.Refusal != "" || a.Resets != 1 {
		t.Errorf("answer %+v", a)
	}
}
