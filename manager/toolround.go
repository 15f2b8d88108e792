package manager

import (
	"strings"

	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/tools"
)

// round is one model turn of a generation: the request sent upstream, and
// what the turn's stream said that the tool loop needs. Without fleet
// tools a generation is one round that passes every delta on.
type round struct {
	job *protocol.Job
	n   int // from 1
	// before is the output of the generation's earlier turns, in bytes:
	// the answer cap holds for all the turns together.
	before int
	fleet  map[string]tools.Info // the job's fleet tools; nil without

	content    strings.Builder     // the turn's text, for the assistant message of the next round
	calls      []protocol.ToolCall // every call of the turn, merged, by the model's index, without its name and arguments
	text       []callText          // by the model's index: the call's name and arguments
	isFleet    map[int]bool        // by the model's index: a call of a fleet tool
	callerIdx  map[int]int         // by the model's index: the index the producer sees
	fleetBytes int
}

// callText is a call's name and arguments as the turn's deltas brought
// them: appended in place, where merging them as strings copied each whole
// at every delta (1 MiB of arguments in 8-byte deltas: 26 s).
type callText struct{ name, args []byte }

// take reads a delta of the turn before it goes to listeners: fleet tool
// calls are the leader's business, so their deltas are taken out (their
// calls show as tool events instead), and the caller's calls are numbered
// from 0 among themselves, as if the fleet's were not there. A turn whose
// fleet calls outgrow limit ends like an answer too large.
func (rd *round) take(d *llm.Delta, limit int) error {
	if rd.fleet == nil {
		return nil // one turn: nothing to keep for a next one
	}
	rd.content.WriteString(d.Content)
	if len(d.ToolCalls) == 0 {
		return nil
	}
	var caller []protocol.ToolCall
	for _, tc := range d.ToolCalls {
		// i is where the merge put the delta, which is the delta's
		// index only when that index is valid (the upstream's word).
		var i int
		head := tc
		head.Function = protocol.FunctionCall{}
		rd.calls, i = protocol.MergeToolCall(rd.calls, head)
		for len(rd.text) <= i {
			rd.text = append(rd.text, callText{})
		}
		t := &rd.text[i]
		t.name = append(t.name, tc.Function.Name...)
		t.args = append(t.args, tc.Function.Arguments...)
		if tc.Function.Name != "" {
			if _, ok := rd.fleet[string(t.name)]; ok {
				rd.isFleet[i] = true
			}
		}
		if rd.isFleet[i] {
			rd.fleetBytes += len(tc.ID) + len(tc.Function.Name) + len(tc.Function.Arguments)
			continue
		}
		ci, ok := rd.callerIdx[i]
		if !ok {
			ci = len(rd.callerIdx)
			rd.callerIdx[i] = ci
		}
		tc.Index = &ci
		caller = append(caller, tc)
	}
	d.ToolCalls = caller
	if rd.fleetBytes > limit {
		return &answerTooLargeError{limit: limit}
	}
	return nil
}

// fleetCalls returns the turn's calls of fleet tools, each with an ID.
func (rd *round) fleetCalls() []protocol.ToolCall {
	var out []protocol.ToolCall
	for i, c := range rd.calls {
		if !rd.isFleet[i] {
			continue
		}
		if c.ID == "" { // some servers send none; the tool message needs one
			c.ID = "call_fleet_" + protocol.NewID()
		}
		c.Type, c.Index = "function", nil
		c.Function = protocol.FunctionCall{Name: string(rd.text[i].name), Arguments: string(rd.text[i].args)}
		out = append(out, c)
	}
	return out
}

// callerCalls reports whether the turn called any of the producer's own
// tools.
func (rd *round) callerCalls() bool { return len(rd.callerIdx) > 0 }

// next returns the following round: this turn's request, the model's
// message with its fleet calls, and one tool message per call with what
// the model reads of its result.
func (rd *round) next(calls []protocol.ToolCall, results []string) *round {
	job := *rd.job
	job.Messages = append(append([]protocol.Message(nil), rd.job.Messages...), protocol.Message{
		Role: protocol.RoleAssistant, Content: contentOrNull(rd.content.String()), ToolCalls: calls,
	})
	for i, c := range calls {
		job.Messages = append(job.Messages, protocol.Message{Role: protocol.RoleTool, ToolCallID: c.ID, Content: protocol.TextContent(results[i])})
	}
	return newRound(&job, rd.n+1, rd.fleet)
}

func newRound(job *protocol.Job, n int, fleet map[string]tools.Info) *round {
	return &round{job: job, n: n, fleet: fleet, isFleet: map[int]bool{}, callerIdx: map[int]int{}}
}

func contentOrNull(s string) protocol.Content {
	if s == "" {
		return protocol.Content{Null: true}
	}
	return protocol.TextContent(s)
}

// restart forgets what an attempt of the turn read: a failover to another
// upstream reads the turn from its start.
func (rd *round) restart() {
	rd.content.Reset()
	rd.calls, rd.text, rd.fleetBytes = nil, nil, 0
	clear(rd.isFleet)
	clear(rd.callerIdx)
}
