package manager_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/tools"
)

// upstreamBody is the part of an upstream request the tool tests read.
type upstreamBody struct {
	Messages []protocol.Message `json:"messages"`
	Tools    []protocol.Tool    `json:"tools"`
	Extra    json.RawMessage    `json:"fleet_tools"`
}

func bodyOf(t *testing.T, r llmtest.Request) upstreamBody {
	t.Helper()
	var b upstreamBody
	if err := json.Unmarshal(r.Body, &b); err != nil {
		t.Fatalf("upstream body: %v", err)
	}
	return b
}

// toolModel scripts a model that, asked by a user, calls the tools calls
// returns (none: it answers at once), and, given tool results, answers
// "tools said: " and the results joined by "|".
func toolModel(calls func(prompt string) []protocol.ToolCall) llmtest.Option {
	return llmtest.WithScript(toolScript(calls))
}

func toolScript(calls func(prompt string) []protocol.ToolCall) func(llmtest.Request) llmtest.Reply {
	return func(r llmtest.Request) llmtest.Reply {
		var b upstreamBody
		_ = json.Unmarshal(r.Body, &b)
		last := b.Messages[len(b.Messages)-1]
		if last.Role == protocol.RoleTool {
			var results []string
			for _, m := range b.Messages {
				if m.Role == protocol.RoleTool {
					results = append(results, m.Content.Text)
				}
			}
			return llmtest.Reply{Tokens: []string{"tools said: ", strings.Join(results, "|")}}
		}
		if cs := calls(last.Content.Text); len(cs) > 0 {
			return llmtest.Reply{ToolCalls: cs}
		}
		return llmtest.DefaultReply(r)
	}
}

// call is a tool call the scripted model makes.
func call(id, name, args string) protocol.ToolCall {
	return protocol.ToolCall{ID: id, Type: "function", Function: protocol.FunctionCall{Name: name, Arguments: args}}
}

// serveTools runs tools on f's NATS server until the test ends.
func serveTools(t *testing.T, f *fleettest.Fleet, ts ...tools.Tool) {
	t.Helper()
	s, err := tools.Serve(natstest.Connect(t, f.NATS.ClientURL()), tools.Config{}, ts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

// counted wraps a tool to count its calls.
func counted(tool tools.Tool, n *atomic.Int64) tools.Tool {
	h := tool.Handler
	tool.Handler = func(ctx context.Context, c tools.Call, out *tools.Output) error {
		n.Add(1)
		return h(ctx, c, out)
	}
	return tool
}

// llmScriptAlwaysCalls is a model that calls the calculator on every turn.
func llmScriptAlwaysCalls() llmtest.Option {
	return llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		return llmtest.Reply{ToolCalls: []protocol.ToolCall{call(fmt.Sprintf("call_%d", r.N), "calculator", `{"expression":"1+1"}`)}}
	})
}

// jobErrorCode is the code of a job's error event; "" for another error.
func jobErrorCode(err error) protocol.Code {
	var jerr *publisher.JobError
	if errors.As(err, &jerr) {
		return jerr.Err.Code
	}
	return ""
}

func toolJob(prompt string, fleet ...string) protocol.Job {
	j := userJob(prompt)
	j.FleetTools = fleet
	return j
}

// containsCode reports whether err, a watch's error, names code.
func containsCode(err error, code string) bool {
	return err != nil && strings.Contains(err.Error(), code)
}
