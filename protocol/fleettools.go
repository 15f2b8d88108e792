package protocol

import "github.com/chatfleet/chatfleet/subjects"

// MaxFleetTools bounds the fleet tools one job may name.
const MaxFleetTools = 32

// validateFleetTools checks the names of the fleet tools a job asks for:
// function names a model accepts, which are subject tokens too.
func (j *Job) validateFleetTools() error {
	if len(j.FleetTools) > MaxFleetTools {
		return Invalid("fleet_tools", "%d tools; the limit is %d", len(j.FleetTools), MaxFleetTools)
	}
	for _, name := range j.FleetTools {
		if err := subjects.ValidName("fleet_tools", name); err != nil {
			return Invalid("fleet_tools", "%s", err.(*subjects.NameError).Reason)
		}
		if len(name) > 64 {
			return Invalid("fleet_tools", "a tool name is longer than 64 characters")
		}
	}
	for _, t := range j.Tools {
		for _, name := range j.FleetTools {
			if t.Function.Name == name {
				return Invalid("fleet_tools", "%q is both a fleet tool and one of the job's own tools", name)
			}
		}
	}
	return nil
}

// ToolState is the state a tool event reports.
type ToolState string

// Tool states.
const (
	// ToolStarted: the call began; Arguments is set.
	ToolStarted ToolState = "started"
	// ToolOutput: Output is a piece of the output the tool streams.
	ToolOutput ToolState = "output"
	// ToolDone: the call succeeded; Output is its whole output, what the
	// model reads.
	ToolDone ToolState = "done"
	// ToolFailed: the call failed or timed out; Error says why, Output
	// holds what it wrote before.
	ToolFailed ToolState = "failed"
)

// ToolEvent is a fleet tool call's step, in a tool event.
type ToolEvent struct {
	CallID string    `json:"call_id"`
	Name   string    `json:"name"`
	State  ToolState `json:"state"`
	// Round numbers the model's turns in the generation, from 1.
	Round     int    `json:"round"`
	Arguments string `json:"arguments,omitempty"`
	// NotIdempotent, on a started event, says the tool must not run twice
	// for a call: the generation cannot be started again.
	NotIdempotent bool   `json:"not_idempotent,omitempty"`
	Output        string `json:"output,omitempty"`
	// Truncated says the output was cut at the fleet's output limit.
	Truncated  bool   `json:"truncated,omitempty"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty"`
}

// Final reports whether the event ends its call.
func (t *ToolEvent) Final() bool { return t.State == ToolDone || t.State == ToolFailed }
