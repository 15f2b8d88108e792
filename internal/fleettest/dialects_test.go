package fleettest_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/worker"
)

func job(prompt string) protocol.Job {
	return protocol.Job{Model: "m", Messages: []protocol.Message{{Role: protocol.RoleUser, Content: protocol.TextContent(prompt)}}}
}

// TestDialectsThroughAWorker plays every recorded upstream dialect through
// a real worker (real NATS, the real go-openai client): the reply carries
// the answer, reasoning, refusal, tool calls, finish reason and usage, or
// ends with the expected error code and the provider's message. Only
// whole answers are served from the cache afterwards.
func TestDialectsThroughAWorker(t *testing.T) {
	t.Parallel()
	byName := map[string]llmtest.Dialect{}
	for _, d := range llmtest.Dialects() {
		byName[d.Name] = d
	}
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		return byName[r.LastUserMessage()].Reply()
	})}})
	f.StartWorker(nil)
	for _, d := range llmtest.Dialects() {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			ctx := fleettest.Context(t, time.Minute)
			ans, err := f.Pub.Complete(ctx, job(d.Name))
			if d.Want.Code != "" {
				var jerr *publisher.JobError
				if !errors.As(err, &jerr) || jerr.Code() != d.Want.Code || !strings.Contains(jerr.Err.Message, d.Want.Message) {
					t.Fatalf("got %+v, %v; want error %s with %q", ans, err, d.Want.Code, d.Want.Message)
				}
				// Every error dialect fails after partial output: the
				// mid-stream policy starts it again once, unless the
				// upstream refused the request (upstream_error).
				want := 2
				if d.Want.Code == protocol.CodeUpstreamError {
					want = 1
				}
				if n := f.LLM.CallsFor(d.Name); n != want {
					t.Errorf("%d upstream calls, want %d", n, want)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				got := llmtest.Outcome{Content: ans.Content, Reasoning: ans.Reasoning, Refusal: ans.Refusal, ToolCalls: ans.ToolCalls,
					FinishReason: ans.FinishReason, Usage: ans.Usage}
				if len(got.ToolCalls) == 0 {
					got.ToolCalls = nil
				}
				if !reflect.DeepEqual(got, d.Want) {
					t.Errorf("got  %+v\nwant %+v", got, d.Want)
				}
			}
			again, err := f.Pub.Complete(ctx, job(d.Name))
			whole := d.Want.Code == "" && (d.Want.FinishReason == "stop" || d.Want.FinishReason == "tool_calls")
			if cached := err == nil && again.Cached; cached != whole {
				t.Errorf("asked again: %+v, %v; served from the cache: %v, want %v", again, err, cached, whole)
			}
		})
	}
}

// TestKeepAlivesPastTheProcessingTimeout: a router that sends keep-alives
// forever (hundreds: more than go-openai's 300 lines) keeps the stream
// past the idle timeout, but the processing timeout ends the request with
// timeout, and the upstream call with it.
func TestKeepAlivesPastTheProcessingTimeout(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{KeepAlives: -1, KeepAliveEvery: 2 * time.Millisecond}
	})}})
	f.StartWorker(func(c *worker.Config) {
		c.Manager.ProcessingTimeout = time.Second
		c.LLM.IdleTimeout = 200 * time.Millisecond
	})
	ctx := fleettest.Context(t, time.Minute)
	ans, err := f.Pub.Complete(ctx, job("think for ever"))
	var jerr *publisher.JobError
	if !errors.As(err, &jerr) || jerr.Code() != protocol.CodeTimeout || !strings.Contains(jerr.Err.Message, "processing timeout") {
		t.Fatalf("got %+v, %v; want error timeout (processing timeout)", ans, err)
	}
	if err := f.LLM.WaitDisconnects(ctx, 1); err != nil {
		t.Fatalf("the upstream call was not ended: %v", err)
	}
	if n := f.LLM.Calls(); n != 1 {
		t.Errorf("%d upstream calls; keep-alives must not make the stream look broken", n)
	}
}
