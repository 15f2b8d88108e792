package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/tools"
	"github.com/chatfleet/chatfleet/tools/devtools"
)

// TestFleetToolsThroughTheGateway: an OpenAI client names the fleet's
// tools in the body (fleet_tools); the leader runs them, and the client
// gets the answer that read their results, with no tool_calls to run.
func TestFleetToolsThroughTheGateway(t *testing.T) {
	t.Parallel()
	b := setup(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithToolUse()}}, nil)
	srv, err := tools.Serve(natstest.Connect(t, b.f.NATS.ClientURL()), tools.Config{}, devtools.Calculator())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })

	client := b.sdk("")
	c, err := client.Chat.Completions.New(fleettest.Context(t, 30*time.Second), openai.ChatCompletionNewParams{
		Model: testModel, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("what is 17*23?")},
	}, option.WithJSONSet("fleet_tools", []string{"calculator"}))
	if err != nil {
		t.Fatal(err)
	}
	msg := c.Choices[0].Message
	if !strings.Contains(msg.Content, "391") || len(msg.ToolCalls) != 0 || c.Choices[0].FinishReason != "stop" {
		t.Errorf("answer %q, tool calls %+v, finish %q", msg.Content, msg.ToolCalls, c.Choices[0].FinishReason)
	}
	if n := b.f.LLM.Calls(); n != 2 {
		t.Errorf("upstream calls %d, want 2 (the tool call, the answer)", n)
	}
}
