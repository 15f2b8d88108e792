package manager

import (
	"testing"

	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/tools"
)

// BenchmarkRoundTakeLongArguments: a fleet call whose 1 MiB of arguments
// arrive 8 bytes a delta, as an upstream streams them.
func BenchmarkRoundTakeLongArguments(b *testing.B) {
	const size, piece = 1 << 20, 8
	fleet := map[string]tools.Info{"search": {Name: "search"}}
	for b.Loop() {
		rd := newRound(&protocol.Job{}, 1, fleet)
		zero := 0
		d := llm.Delta{ToolCalls: []protocol.ToolCall{{Index: &zero, ID: "c", Function: protocol.FunctionCall{Name: "search"}}}}
		if err := rd.take(&d, 2*size); err != nil {
			b.Fatal(err)
		}
		for range size / piece {
			d := llm.Delta{ToolCalls: []protocol.ToolCall{{Index: &zero, Function: protocol.FunctionCall{Arguments: "01234567"}}}}
			if err := rd.take(&d, 2*size); err != nil {
				b.Fatal(err)
			}
		}
		if calls := rd.fleetCalls(); len(calls) != 1 || len(calls[0].Function.Arguments) != size {
			b.Fatalf("calls %d", len(calls))
		}
	}
}
