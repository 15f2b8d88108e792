package protocol

// Priority orders jobs wherever they wait — in the queue, and for a
// fleet's upstream capacity — never what they are: it is not sent
// upstream and not part of the dedupe key. Higher goes first; lower still
// progresses (see the README on priorities).
type Priority string

// The priorities; an empty Priority is PriorityNormal.
const (
	PriorityHigh   Priority = "high"
	PriorityNormal Priority = "normal"
	PriorityLow    Priority = "low"
)

// Priorities are every priority, highest first.
var Priorities = []Priority{PriorityHigh, PriorityNormal, PriorityLow}

// Rank is p's place in Priorities: 0 for high, 1 for normal (and empty),
// 2 for low; -1 for a priority that is none of them.
func (p Priority) Rank() int {
	switch p {
	case PriorityHigh:
		return 0
	case PriorityNormal, "":
		return 1
	case PriorityLow:
		return 2
	}
	return -1
}
