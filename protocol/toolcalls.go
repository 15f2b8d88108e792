package protocol

// maxToolCalls bounds the index of a tool-call delta, so a bad index cannot
// make a merge allocate without limit.
const maxToolCalls = 1024

// MergeToolCalls folds tool-call deltas into whole calls, by index: the
// first delta of an index brings its id, type and name, later ones append
// to the arguments. A delta without a valid index starts a new call.
func MergeToolCalls(calls []ToolCall, deltas []ToolCall) []ToolCall {
	for _, d := range deltas {
		calls, _ = MergeToolCall(calls, d)
	}
	return calls
}

// MergeToolCall folds one delta into calls as MergeToolCalls does and
// returns where: the position in calls of the call it belongs to.
func MergeToolCall(calls []ToolCall, d ToolCall) ([]ToolCall, int) {
	i := len(calls)
	if d.Index != nil && *d.Index >= 0 && *d.Index <= maxToolCalls {
		i = *d.Index
	}
	for len(calls) <= i {
		idx := len(calls)
		calls = append(calls, ToolCall{Index: &idx})
	}
	c := &calls[i]
	if d.ID != "" {
		c.ID = d.ID
	}
	if d.Type != "" {
		c.Type = d.Type
	}
	c.Function.Name += d.Function.Name
	c.Function.Arguments += d.Function.Arguments
	return calls, i
}
