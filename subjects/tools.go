package subjects

import "strings"

// Tool is the subject fleet tool name answers calls on:
// <prefix>.tool.<name>.
func (n Names) Tool(name string) string { return n.prefix + ".tool." + name }

// AllTools matches every tool's call subject: <prefix>.tool.>.
func (n Names) AllTools() string { return n.prefix + ".tool.>" }

// ToolOutput is the subject a tool streams one call's output on, chosen
// by the caller: <prefix>.toolout.<call>, call a token unique to the call.
func (n Names) ToolOutput(call string) string { return n.prefix + ".toolout." + call }

// AllToolOutputs matches every ToolOutput subject: <prefix>.toolout.>.
func (n Names) AllToolOutputs() string { return n.prefix + ".toolout.>" }

// Prepare is the subject the preparation service of tenant answers on:
// <prefix>.prepare.<tenant>.
func (n Names) Prepare(tenant string) string { return n.prefix + ".prepare." + tenant }

// AllPrepares matches every tenant's preparation subject: <prefix>.prepare.>.
func (n Names) AllPrepares() string { return n.prefix + ".prepare.>" }

// ParseToolOutput returns the call token of a ToolOutput subject: a tool
// server streams only on subjects of this shape, never on one a caller
// names elsewhere (a job's or a reply's).
func (n Names) ParseToolOutput(subject string) (call string, err error) {
	call, ok := strings.CutPrefix(subject, n.prefix+".toolout.")
	if !ok {
		return "", &NameError{Field: "output subject", Value: subject, Reason: "want prefix " + n.prefix + ".toolout."}
	}
	if err := ValidName("output subject", call); err != nil {
		return "", err
	}
	return call, nil
}
