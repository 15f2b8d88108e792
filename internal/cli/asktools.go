package cli

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/chatfleet/chatfleet/protocol"
)

// maxToolShown bounds how much of a tool's arguments and output ask
// shows on a tool's line: the model reads all of it, a person a glance.
const maxToolShown = 200

// toolLines turns the tool events of a reply into one line a call, said
// when the call ends: `[calculator {"expression":"17*23"} → 391]`, or
// `[calculator {…} failed: why]`. The arguments come with the call's
// started event, so it remembers them until then.
type toolLines struct {
	args map[string]string // call ID → arguments, of the calls not ended yet
}

// line returns what to print for ev, or "" for nothing.
func (l *toolLines) line(ev *protocol.ToolEvent) string {
	if ev == nil {
		return ""
	}
	if l.args == nil {
		l.args = map[string]string{}
	}
	args := ev.Arguments
	if args == "" {
		args = l.args[ev.CallID]
	}
	switch ev.State {
	case protocol.ToolStarted:
		l.args[ev.CallID] = args
		return ""
	case protocol.ToolDone:
		delete(l.args, ev.CallID)
		out := shown(ev.Output)
		if ev.Truncated {
			out += " (cut)"
		}
		return fmt.Sprintf("[%s %s → %s]", shown(ev.Name), shown(args), out)
	case protocol.ToolFailed:
		delete(l.args, ev.CallID)
		return fmt.Sprintf("[%s %s failed: %s]", shown(ev.Name), shown(args), shown(ev.Error))
	}
	return "" // streamed output: the done event has all of it
}

// reset forgets the calls of a generation that starts again.
func (l *toolLines) reset() { clear(l.args) }

// shown makes text from a tool or the model fit one line of a terminal:
// control characters (escape sequences, newlines) become spaces, and
// past maxToolShown bytes it is cut.
func shown(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxToolShown {
		s = strings.ToValidUTF8(s[:maxToolShown], "") + "…"
	}
	return s
}
