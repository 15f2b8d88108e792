package llmtest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/chatfleet/chatfleet/protocol"
)

// WithToolUse makes the default script use the tools a request offers,
// as a model would (ToolUseReply): dev mode's simulated model, so the
// fleet's tool loop can be tried without an LLM. It has no effect
// together with WithScript.
func WithToolUse() Option {
	return func(s *Server) { s.toolUse = true }
}

// ToolUseReply is the answer of a model that uses tools, for requests
// where it has one (ok); for the others the caller answers as it would
// anyway. When the request offers tools (and tool_choice is not "none")
// and its last message is the user's, it calls one tool, finish_reason
// "tool_calls": a tool the message names, else "calculator" when the
// message holds an arithmetic expression, else the first one offered.
// The calculator's arguments are {"expression": <the expression>}, any
// other tool's {}. When the last messages are tool results, it answers in
// words with their content: "The calculator says 391." Its length
// follows n as AnswerTokens' does (n <= 0: natural), cut at the
// request's max_tokens.
func ToolUseReply(r Request, n int) (rep Reply, ok bool) {
	w := r.decode()
	if len(w.Messages) == 0 {
		return Reply{}, false
	}
	switch w.Messages[len(w.Messages)-1].Role {
	case "user":
		call, ok := w.pickTool()
		if !ok {
			return Reply{}, false
		}
		return Reply{ToolCalls: []protocol.ToolCall{call}}, true
	case "tool":
		return fit(SplitTokens(w.toolAnswer()), n, r.MaxTokens()), true
	}
	return Reply{}, false
}

// pickTool chooses the tool call a user message gets, if any.
func (w wireRequest) pickTool() (protocol.ToolCall, bool) {
	var offered []string
	for _, t := range w.Tools {
		if t.Function.Name != "" {
			offered = append(offered, t.Function.Name)
		}
	}
	if len(offered) == 0 || strings.Trim(string(w.ToolChoice), `"`) == "none" {
		return protocol.ToolCall{}, false
	}
	msg := w.Messages[len(w.Messages)-1].text()
	expr := Expression(msg)
	name := offered[0]
	named := slices.IndexFunc(offered, func(o string) bool { return strings.Contains(strings.ToLower(msg), strings.ToLower(o)) })
	switch {
	case named >= 0:
		name = offered[named]
	case expr != "" && slices.Contains(offered, "calculator"):
		name = "calculator"
	}
	args := "{}"
	if name == "calculator" {
		if expr == "" {
			// Nothing to compute: a model would not call it.
			return protocol.ToolCall{}, false
		}
		b, _ := json.Marshal(map[string]string{"expression": expr})
		args = string(b)
	}
	return protocol.ToolCall{Type: "function", Function: protocol.FunctionCall{Name: name, Arguments: args}}, true
}

// toolAnswer says what the trailing tool messages hold, naming each
// tool from the assistant's call it answers.
func (w wireRequest) toolAnswer() string {
	names := map[string]string{} // tool call ID → tool name
	for _, m := range w.Messages {
		for _, c := range m.ToolCalls {
			names[c.ID] = c.Function.Name
		}
	}
	first := len(w.Messages)
	for first > 0 && w.Messages[first-1].Role == "tool" {
		first--
	}
	var parts []string
	for _, m := range w.Messages[first:] {
		name := names[m.ToolCallID]
		if name == "" {
			name = "tool"
		}
		content := strings.Join(strings.Fields(m.text()), " ")
		if len([]rune(content)) > maxEcho {
			content = string([]rune(content)[:maxEcho]) + "…"
		}
		parts = append(parts, fmt.Sprintf("The %s says %s.", name, strings.TrimSuffix(content, ".")))
	}
	return strings.Join(parts, " ")
}

// Expression returns the longest arithmetic expression in s (digits,
// spaces, . ( ) + - * / % ^, with at least one operator between two
// numbers), or "" when there is none: what the simulated model asks the
// calculator.
func Expression(s string) string {
	best := ""
	isExpr := func(c rune) bool { return strings.ContainsRune("0123456789.()+-*/%^ ", c) }
	for _, run := range strings.FieldsFunc(s, func(c rune) bool { return !isExpr(c) }) {
		run = strings.Trim(run, " +*/%^.")
		run = strings.TrimRight(run, "-(")
		run = strings.TrimLeft(run, ")")
		if !strings.ContainsAny(run, "0123456789") || !strings.ContainsAny(strings.TrimLeft(run, "-( "), "+-*/%^") {
			continue
		}
		if len(run) > len(best) {
			best = run
		}
	}
	return best
}
