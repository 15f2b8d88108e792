package llm

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

// assemble folds deltas into the answer they make.
func assemble(ds []Delta) llmtest.Outcome {
	var o llmtest.Outcome
	for _, d := range ds {
		o.Content += d.Content
		o.Reasoning += d.ReasoningContent
		o.Refusal += d.Refusal
		o.ToolCalls = protocol.MergeToolCalls(o.ToolCalls, d.ToolCalls)
		if d.FinishReason != "" {
			o.FinishReason = d.FinishReason
		}
		if d.Usage != nil {
			o.Usage = d.Usage
		}
	}
	return o
}

// TestDialects plays every recorded upstream dialect against the real
// go-openai client: the answer, its reasoning, refusal, tool calls, finish
// reason and usage come out right, or the stream ends with the expected
// error code and the provider's message.
func TestDialects(t *testing.T) {
	t.Parallel()
	for _, d := range llmtest.Dialects() {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			c, srv := setup(t, Config{MaxRetries: -1}, llmtest.WithScript(func(llmtest.Request) llmtest.Reply { return d.Reply() }))
			ds, err := run(t, c, job(d.Name))
			if d.Want.Code != "" {
				e := asError(t, err, d.Want.Code)
				if !strings.Contains(e.Message, d.Want.Message) {
					t.Errorf("message %q, want it to contain %q", e.Message, d.Want.Message)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v (deltas %+v)", err, ds)
			}
			if got := assemble(ds); !reflect.DeepEqual(got, d.Want) {
				t.Errorf("got  %s\nwant %s", describe(got), describe(d.Want))
			}
			if srv.Calls() != 1 {
				t.Errorf("%d calls", srv.Calls())
			}
		})
	}
}

func describe(o llmtest.Outcome) string {
	var calls []string
	for _, tc := range o.ToolCalls {
		calls = append(calls, tc.ID+" "+tc.Function.Name+tc.Function.Arguments)
	}
	return strings.Join([]string{"content=" + o.Content, "reasoning=" + o.Reasoning, "refusal=" + o.Refusal,
		"calls=" + strings.Join(calls, ";"), "finish=" + o.FinishReason, "usage=" + usageString(o.Usage)}, " | ")
}

func usageString(u *protocol.Usage) string {
	if u == nil {
		return "none"
	}
	return strings.Join([]string{strconv.Itoa(u.PromptTokens), strconv.Itoa(u.CompletionTokens), strconv.Itoa(u.TotalTokens)}, "/")
}
