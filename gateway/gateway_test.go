package gateway_test

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	goopenai "github.com/sashabaranov/go-openai"

	"github.com/chatfleet/chatfleet/gateway"
	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

// TestOfficialSDK: the official OpenAI Go SDK, streaming and not, gets the
// worker's answer byte for byte, with its usage, a stable ID tied to the
// job, and the request ID in a header.
func TestOfficialSDK(t *testing.T) {
	t.Parallel()
	b := setup(t, fleettest.Options{}, nil)
	ctx := fleettest.Context(t, 30*time.Second)
	client := b.sdk("")
	want := answerTo("hello gateway")

	var resp *http.Response
	c, err := client.Chat.Completions.New(ctx, userParams("hello gateway"), option.WithResponseInto(&resp))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Choices[0].Message.Content; got != want || c.Choices[0].FinishReason != "stop" {
		t.Errorf("completion %q (%s), want %q", got, c.Choices[0].FinishReason, want)
	}
	if id := resp.Header.Get(gateway.HeaderRequestID); c.ID != "chatcmpl-"+id || id == "" || c.Usage.TotalTokens == 0 || c.Object != "chat.completion" {
		t.Errorf("id %q, header %q, usage %+v", c.ID, id, c.Usage)
	}

	params := userParams("hello stream")
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(ctx, params)
	acc := openai.ChatCompletionAccumulator{}
	chunks, role := 0, ""
	for stream.Next() {
		ch := stream.Current()
		if chunks == 0 && len(ch.Choices) > 0 {
			role = ch.Choices[0].Delta.Role
		}
		chunks++
		acc.AddChunk(ch)
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got := acc.Choices[0].Message.Content; got != answerTo("hello stream") || role != "assistant" {
		t.Errorf("stream %q (first role %q), want %q", got, role, answerTo("hello stream"))
	}
	if acc.Usage.TotalTokens == 0 || acc.Choices[0].FinishReason != "stop" || !strings.HasPrefix(acc.ID, "chatcmpl-") || chunks < 4 {
		t.Errorf("stream usage %+v, finish %q, id %q, %d chunks", acc.Usage, acc.Choices[0].FinishReason, acc.ID, chunks)
	}
}

// TestGoOpenAIClient: go-openai, the client the workers use upstream, also
// reads the gateway's stream, tool-call deltas included.
func TestGoOpenAIClient(t *testing.T) {
	t.Parallel()
	idx := 0
	call := protocol.ToolCall{Index: &idx, ID: "call_1", Type: "function", Function: protocol.FunctionCall{Name: "lookup", Arguments: `{"city":"Oslo"}`}}
	b := setup(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		if strings.Contains(r.LastUserMessage(), "tool") {
			return llmtest.Reply{Tokens: []string{}, ToolCalls: []protocol.ToolCall{call}}
		}
		return llmtest.DefaultReply(r)
	})}}, nil)
	ctx := fleettest.Context(t, 30*time.Second)
	cfg := goopenai.DefaultConfig("unused")
	cfg.BaseURL = b.url
	client := goopenai.NewClientWithConfig(cfg)
	stream, err := client.CreateChatCompletionStream(ctx, goopenai.ChatCompletionRequest{Model: testModel,
		Messages: []goopenai.ChatCompletionMessage{{Role: "user", Content: "use a tool"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var calls []protocol.ToolCall
	finish := ""
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range r.Choices[0].Delta.ToolCalls {
			calls = protocol.MergeToolCalls(calls, []protocol.ToolCall{{Index: tc.Index, ID: tc.ID, Type: string(tc.Type),
				Function: protocol.FunctionCall{Name: tc.Function.Name, Arguments: tc.Function.Arguments}}})
		}
		if fr := r.Choices[0].FinishReason; fr != "" {
			finish = string(fr)
		}
	}
	if len(calls) != 1 || calls[0].ID != "call_1" || calls[0].Function.Name != "lookup" || calls[0].Function.Arguments != `{"city":"Oslo"}` || finish != "tool_calls" {
		t.Errorf("tool calls %+v, finish %q", calls, finish)
	}
}

// TestHerdThroughTheGateway: 100 concurrent identical SDK requests make
// one upstream call and all get the same answer.
func TestHerdThroughTheGateway(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	defer open()
	b := setup(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		rep := llmtest.DefaultReply(r)
		rep.StallAfter, rep.Release = -1, gate
		return rep
	})}}, nil)
	ctx := fleettest.Context(t, 60*time.Second)
	client := b.sdk("")
	const n = 100
	answers := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := client.Chat.Completions.New(ctx, userParams("herd"))
			if err == nil {
				answers[i] = c.Choices[0].Message.Content
			}
			errs[i] = err
		})
	}
	if err := b.f.LLM.WaitCalls(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Every request is in before the upstream answers: wait until all
	// 100 jobs were pulled (the worker's followers plus its leader).
	b.f.WaitConsumer(t, ctx, "the herd pulled", func(info *jetstream.ConsumerInfo) bool {
		return info.NumAckPending == n && info.NumPending == 0
	})
	open()
	wg.Wait()
	for i := range n {
		if errs[i] != nil || answers[i] != answerTo("herd") {
			t.Fatalf("request %d: %q, %v", i, answers[i], errs[i])
		}
	}
	if c := b.f.LLM.Calls(); c != 1 {
		t.Errorf("%d upstream calls, want 1", c)
	}
}

// TestModels: /v1/models lists what the workers serve, asked over NATS.
func TestModels(t *testing.T) {
	t.Parallel()
	b := setup(t, fleettest.Options{}, nil)
	ctx := fleettest.Context(t, 30*time.Second)
	client := b.sdk("")
	page, err := client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 1 || page.Data[0].ID != testModel {
		t.Errorf("models %+v, want [%s]", page.Data, testModel)
	}
}
