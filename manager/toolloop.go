package manager

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/tools"
)

// errNotIdempotent ends a generation that would have to start again after
// it called a tool that must not run twice.
var errNotIdempotent = errors.New("the generation must start again, and it called a tool that is not idempotent")

// maxFleetCallsPerTurn bounds the fleet tool calls run for one model turn;
// the model reads that the rest were not called.
const maxFleetCallsPerTurn = 32

// toolRoundsError ends a generation whose model kept calling fleet tools.
type toolRoundsError struct{ limit int }

func (e *toolRoundsError) Error() string {
	return fmt.Sprintf("the model called fleet tools in more than %d rounds (CHATFLEET_TOOL_MAX_ROUNDS)", e.limit)
}

// unknownToolError is a job naming a fleet tool no tool service offers.
type unknownToolError struct{ name string }

func (e *unknownToolError) Error() string {
	return fmt.Sprintf("no tool service of the fleet offers the tool %q", e.name)
}

// generateRounds generates the answer: one model turn, or, when the job
// offers fleet tools, turns until the model answers without calling one.
// After each turn that called fleet tools the leader runs them, in
// parallel and holding no upstream slot, and the next turn reads their
// results. The turns are one generation: one answer, deduped and cached
// as one.
func (h *hub) generateRounds(ctx context.Context, gen int) (*streamed, error) {
	job := h.upstreamJob()
	if len(job.FleetTools) == 0 {
		return h.generate(ctx, gen, newRound(job, 1, nil))
	}
	offered, err := h.fleetTools(ctx, job)
	if err != nil {
		return nil, err
	}
	rd := newRound(withFleetTools(job, offered), 1, offered)
	total := &streamed{}
	for {
		res, err := h.generate(ctx, gen, rd)
		if err != nil {
			return nil, err
		}
		total.add(res)
		calls := rd.fleetCalls()
		if len(calls) == 0 {
			return total, nil
		}
		if rd.n > h.m.cfg.MaxToolRounds {
			h.m.chargeUpstream(res.upstream, res.charge) // spent, though the answer fails
			return nil, &toolRoundsError{limit: h.m.cfg.MaxToolRounds}
		}
		results := h.runTools(ctx, gen, rd.n, calls, offered)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if rd.callerCalls() {
			// The producer runs its own tools: the generation ends with
			// its calls; the fleet's ran and are in the tool events.
			total.finishReason = "tool_calls"
			return total, nil
		}
		// The turn's tokens count against its upstream now; the last
		// turn's when the generation succeeds.
		h.m.chargeUpstream(res.upstream, res.charge)
		rd = rd.next(calls, results)
		rd.before = total.bytes
	}
}

// fleetTools returns the job's fleet tools as the fleet's tool services
// advertise them; a tool none offers fails the job.
func (h *hub) fleetTools(ctx context.Context, job *protocol.Job) (map[string]tools.Info, error) {
	known := h.m.tools.Lookup(ctx, job.FleetTools...)
	offered := make(map[string]tools.Info, len(job.FleetTools))
	for _, name := range job.FleetTools {
		info, ok := known[name]
		if !ok {
			return nil, &unknownToolError{name: name}
		}
		offered[name] = info
	}
	return offered, nil
}

// withFleetTools returns a copy of job offering the fleet tools as
// functions, after its own tools.
func withFleetTools(job *protocol.Job, offered map[string]tools.Info) *protocol.Job {
	j := *job
	j.Tools = append([]protocol.Tool(nil), job.Tools...)
	for _, name := range job.FleetTools { // sorted: one request for one job
		info := offered[name]
		j.Tools = append(j.Tools, protocol.Tool{Type: "function",
			Function: protocol.FunctionSpec{Name: name, Description: info.Description, Parameters: info.Parameters}})
	}
	return &j
}

// add folds a turn's result into the generation's.
func (s *streamed) add(turn *streamed) {
	s.finishReason, s.upstream, s.charge = turn.finishReason, turn.upstream, turn.charge
	s.bytes += turn.bytes
	s.slotWait += turn.slotWait
	if s.firstToken == 0 {
		s.firstToken = turn.firstToken
	}
	if u := turn.usage; u != nil {
		if s.usage == nil {
			s.usage = &protocol.Usage{}
		}
		s.usage.PromptTokens += u.PromptTokens
		s.usage.CompletionTokens += u.CompletionTokens
		s.usage.TotalTokens += u.TotalTokens
	}
}

// runTools calls the turn's fleet tools in parallel, each within
// ToolTimeout, and returns what the model reads of each: its output, or
// what went wrong. Every step is a tool entry in the log, so every
// listener sees the calls live.
func (h *hub) runTools(ctx context.Context, gen, n int, calls []protocol.ToolCall, offered map[string]tools.Info) []string {
	results := make([]string, len(calls))
	if len(calls) > maxFleetCallsPerTurn {
		for i := maxFleetCallsPerTurn; i < len(calls); i++ {
			results[i] = fmt.Sprintf("error: not called: a turn may call at most %d fleet tools", maxFleetCallsPerTurn)
		}
		calls = calls[:maxFleetCallsPerTurn]
	}
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Add(1)
		go func() { // joined below; a call ends with ctx
			defer wg.Done()
			results[i] = h.runTool(ctx, gen, n, c, offered[c.Function.Name])
		}()
	}
	wg.Wait()
	return results
}

// runTool runs one call and returns what the model reads of it.
func (h *hub) runTool(ctx context.Context, gen, n int, c protocol.ToolCall, info tools.Info) string {
	name := c.Function.Name
	if limit := h.m.chunkLimit(); len(c.Function.Arguments) > limit {
		// One event carries the arguments, and the reply stream refuses
		// an event past max_payload: the call is not made, and the model
		// reads why.
		h.appendEntry(gen, entry{kind: entryTool, tool: &protocol.ToolEvent{CallID: c.ID, Name: name, State: protocol.ToolStarted,
			Round: n, Arguments: tools.CutAt(c.Function.Arguments, limit), Truncated: true}})
		msg := fmt.Sprintf("not called: the arguments are longer than %d bytes", limit)
		h.appendEntry(gen, entry{kind: entryTool, tool: &protocol.ToolEvent{CallID: c.ID, Name: name, State: protocol.ToolFailed, Round: n, Error: msg}})
		return "error: " + msg
	}
	h.appendEntry(gen, entry{kind: entryTool, tool: &protocol.ToolEvent{CallID: c.ID, Name: name, State: protocol.ToolStarted,
		Round: n, Arguments: c.Function.Arguments, NotIdempotent: !info.Idempotent}})
	limit := min(h.m.cfg.MaxToolOutputBytes, h.m.chunkLimit())
	streamedBytes := 0
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, h.m.cfg.ToolTimeout)
	defer cancel()
	reply, err := h.m.tools.Call(cctx, name, tools.Request{ID: c.ID, Tenant: h.job.Tenant, Arguments: c.Function.Arguments, MaxOutputBytes: limit},
		func(ch tools.Chunk) {
			if streamedBytes += len(ch.Text); streamedBytes <= limit {
				h.appendEntry(gen, entry{kind: entryTool, tool: &protocol.ToolEvent{CallID: c.ID, Name: name, State: protocol.ToolOutput, Round: n, Output: ch.Text}})
			}
		})
	end := &protocol.ToolEvent{CallID: c.ID, Name: name, State: protocol.ToolDone, Round: n, Output: reply.Output,
		Truncated: reply.Truncated, DurationMS: time.Since(start).Milliseconds()}
	var ce *tools.CallError
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return "" // the generation is over: nothing more to say
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ce) && ce.Code == "504":
		// The caller's deadline, or the server's (the same one, sent
		// along): whichever is seen first.
		end.Error = fmt.Sprintf("the tool did not answer within %s", h.m.cfg.ToolTimeout)
	case errors.As(err, &ce):
		end.Error = ce.Msg
	default:
		end.Error = err.Error()
	}
	result := end.Output
	if end.Error != "" {
		end.State = protocol.ToolFailed
		result = "error: " + end.Error
	}
	h.appendEntry(gen, entry{kind: entryTool, tool: end})
	return result
}

// calledNotIdempotent reports whether the hub's log shows a call of a tool
// that must not run twice: then the answer cannot be generated again.
func (h *hub) calledNotIdempotent() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.log.entries {
		if e.kind == entryTool && e.tool.State == protocol.ToolStarted && e.tool.NotIdempotent {
			return true
		}
	}
	return false
}

// checkRestartable refuses to lead a generation that would call again a
// tool that must not run twice: one an earlier generation of this hub
// called (its leader died, and this worker takes over).
func (h *hub) checkRestartable() error {
	if h.calledNotIdempotent() {
		return errNotIdempotent
	}
	return nil
}

// replayTool emits a cached tool call as its started and final events.
func replayTool(t *protocol.ToolEvent, emit func(entry)) {
	emit(entry{kind: entryTool, tool: &protocol.ToolEvent{CallID: t.CallID, Name: t.Name, State: protocol.ToolStarted, Round: t.Round, Arguments: t.Arguments}})
	final := *t
	final.Arguments = ""
	emit(entry{kind: entryTool, tool: &final})
}

// offersNotIdempotentTool reports whether the job offers a fleet tool
// that must not run twice (as the tool services advertise it now).
func (r *request) offersNotIdempotentTool() bool {
	if len(r.job.FleetTools) == 0 {
		return false
	}
	known := r.m.tools.Tools(r.ctx)
	for _, name := range r.job.FleetTools {
		if info, ok := known[name]; ok && !info.Idempotent {
			return true
		}
	}
	return false
}
