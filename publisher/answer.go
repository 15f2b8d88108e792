package publisher

import (
	"context"

	"github.com/chatfleet/chatfleet/protocol"
)

// Answer is a finished reply, assembled from its events.
type Answer struct {
	Tenant    string
	ID        string
	Worker    string        // the worker that served the request
	Role      protocol.Role // leader, follower or cache
	Model     string        // the model that answered (the worker's default when the job named none)
	Content   string
	ToolCalls []protocol.ToolCall // merged from the deltas
	Refusal   string              // set when the model declined to answer
	Reasoning string              // a reasoning model's thinking, apart from Content
	// Tools are the fleet tool calls the leader ran for the answer, each as
	// its final tool event (done or failed), with the call's arguments.
	Tools        []protocol.ToolEvent
	FinishReason string
	Usage        *protocol.Usage
	Timings      *protocol.Timings
	Cached       bool
	Resets       int // how many resets the reply carried
}

// apply folds one event into the answer.
func (a *Answer) apply(ev *protocol.Event) {
	switch ev.Type {
	case protocol.EventMeta:
		a.Worker, a.Role, a.Model = ev.Worker, ev.Role, ev.Model
	case protocol.EventChunk:
		a.Content += ev.Content
		a.ToolCalls = protocol.MergeToolCalls(a.ToolCalls, ev.ToolCalls)
		a.Refusal += ev.Refusal
		a.Reasoning += ev.ReasoningContent
	case protocol.EventTool:
		a.applyTool(ev.Tool)
	case protocol.EventReset:
		a.Content, a.ToolCalls, a.Refusal, a.Reasoning, a.Tools = "", nil, "", "", nil
		a.Resets++
	case protocol.EventDone:
		a.FinishReason, a.Usage, a.Timings, a.Cached = ev.FinishReason, ev.Usage, ev.Timings, ev.Cached
	}
}

// Collect reads the reply to its end and assembles the answer: on done the
// answer, on cancelled ErrCancelled, on error a *JobError.
func (r *Reply) Collect(ctx context.Context) (*Answer, error) {
	a := &Answer{Tenant: r.tenant, ID: r.id}
	for ev, err := range r.Events(ctx) {
		if err != nil {
			return nil, err
		}
		a.apply(&ev)
		switch ev.Type {
		case protocol.EventDone:
			return a, nil
		case protocol.EventCancelled:
			return nil, ErrCancelled
		case protocol.EventError:
			jerr := &JobError{Tenant: r.tenant, ID: r.id}
			if ev.Error != nil {
				jerr.Err = *ev.Error
			} else {
				jerr.Err = protocol.Error{Code: protocol.CodeInternal, Message: "error event without error"}
			}
			return nil, jerr
		}
	}
	return nil, ErrReplyEnded
}

// applyTool keeps a fleet tool call's final event, with the arguments its
// started event carried.
func (a *Answer) applyTool(t *protocol.ToolEvent) {
	switch {
	case t == nil:
	case t.State == protocol.ToolStarted:
		a.Tools = append(a.Tools, protocol.ToolEvent{CallID: t.CallID, Name: t.Name, State: t.State, Round: t.Round, Arguments: t.Arguments})
	case t.Final():
		for i := range a.Tools {
			if a.Tools[i].CallID == t.CallID && a.Tools[i].Round == t.Round {
				args := a.Tools[i].Arguments
				a.Tools[i] = *t
				a.Tools[i].Arguments = args
			}
		}
	}
}
