package manager_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/internal/natstest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/publisher"
	"github.com/chatfleet/chatfleet/worker"
)

// TestCacheableFinishes: an answer is served from the cache only when it
// ended as the model meant it to ("stop", "tool_calls", "length"); one
// that a filter cut, that ended in an error (in the stream or a broken
// one), or with a finish reason chatfleet does not know, is streamed but
// never cached. (Cancelled generations: TestCancelEveryone.)
func TestCacheableFinishes(t *testing.T) {
	t.Parallel()
	chunk := func(s string) string {
		return `data: {"choices":[{"index":0,"delta":{"content":"` + s + `"},"finish_reason":null}]}` + "\n\n"
	}
	tokens := []string{"a", " whole", " answer"}
	replies := map[string]llmtest.Reply{
		"stop":           {Tokens: tokens},
		"tool_calls":     {ToolCalls: []protocol.ToolCall{{Function: protocol.FunctionCall{Name: "f", Arguments: `{"x":1}`}}}},
		"length":         {Tokens: tokens, FinishReason: "length"},
		"content_filter": {Tokens: tokens, FinishReason: "content_filter"},
		"abort":          {Tokens: tokens, FinishReason: "abort"},
		"error": {Raw: []string{chunk("Once upon"), `data: {"id":"g","error":{"code":"server_error","message":"Provider disconnected unexpectedly"},` +
			`"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}` + "\n\n", "data: [DONE]\n\n"}},
		"partial": {Tokens: tokens, CutAfter: 2},
	}
	f := fleettest.New(t, fleettest.Options{LLM: []llmtest.Option{llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		return replies[r.LastUserMessage()]
	})}})
	f.StartWorker(func(c *worker.Config) { c.Manager.MidStreamRetries = -1 })

	for _, tt := range []struct {
		prompt string
		code   protocol.Code // the request's error, or "" for done
		cached bool
	}{
		{"stop", "", true},
		{"tool_calls", "", true},
		{"length", "", true},
		{"content_filter", "", false},
		{"abort", "", false},
		{"error", protocol.CodeUpstreamUnavailable, false},
		{"partial", protocol.CodeUpstreamError, false},
	} {
		t.Run(tt.prompt, func(t *testing.T) {
			t.Parallel()
			ctx := ctxFor(t, time.Minute)
			first, err := f.Pub.Complete(ctx, userJob(tt.prompt))
			if jerr := (*publisher.JobError)(nil); errors.As(err, &jerr) {
				if jerr.Code() != tt.code {
					t.Fatalf("first: %v, want code %q", err, tt.code)
				}
			} else if err != nil || tt.code != "" || first.FinishReason != tt.prompt {
				t.Fatalf("first: %+v, %v; want finish %q, code %q", first, err, tt.prompt, tt.code)
			}
			second, err := f.Pub.Complete(ctx, userJob(tt.prompt))
			switch {
			case tt.cached && (err != nil || !second.Cached || second.Role != protocol.RoleCache || second.Content != first.Content ||
				second.FinishReason != tt.prompt || f.LLM.CallsFor(tt.prompt) != 1):
				t.Errorf("second: %+v, %v after %d calls; want it from the cache", second, err, f.LLM.CallsFor(tt.prompt))
			case !tt.cached && (f.LLM.CallsFor(tt.prompt) != 2 || second != nil && second.Cached):
				t.Errorf("second: %+v, %v after %d calls; want a second upstream call, nothing cached", second, err, f.LLM.CallsFor(tt.prompt))
			}
		})
	}
}

// oldCachedAnswer is the cache entry of workers before the cache format
// version (commit 0aa4f38), as they decode every entry.
type oldCachedAnswer struct {
	Content      string              `json:"content,omitempty"`
	ToolCalls    []protocol.ToolCall `json:"tool_calls,omitempty"`
	Refusal      string              `json:"refusal,omitempty"`
	Reasoning    string              `json:"reasoning_content,omitempty"`
	FinishReason string              `json:"finish_reason"`
	Usage        *protocol.Usage     `json:"usage,omitempty"`
	Model        string              `json:"model"`
	Created      time.Time           `json:"created"`
}

// TestCacheEntriesAcrossAnUpgrade: fleets upgrade one worker at a time.
// An entry an older worker wrote — here a broken answer, cached as older
// workers did — is a miss for a new worker, which answers afresh and
// overwrites it; an entry a new worker writes reads whole with the older
// format, so older workers serve it as before.
func TestCacheEntriesAcrossAnUpgrade(t *testing.T) {
	t.Parallel()
	f := fleettest.New(t, fleettest.Options{})
	f.StartWorker(nil)
	ctx := ctxFor(t, time.Minute)
	js, err := jetstream.New(natstest.Connect(t, f.NATS.ClientURL()))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, f.Topology.WithDefaults().Names.CacheBucket())
	if err != nil {
		t.Fatal(err)
	}
	job := userJob("asked before and after the upgrade")
	first, err := f.Pub.Complete(ctx, job)
	if err != nil || first.Role != protocol.RoleLeader {
		t.Fatalf("first: %+v, %v", first, err)
	}
	keys, err := kv.Keys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("cache keys %v, %v", keys, err)
	}
	key := keys[0]

	// New entry, older worker: every field it knows comes through.
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var old oldCachedAnswer
	if err := json.Unmarshal(e.Value(), &old); err != nil || old.Content != first.Content || old.FinishReason != "stop" ||
		old.Usage == nil || *old.Usage != *first.Usage || old.Model != "m" || old.Created.IsZero() {
		t.Fatalf("an older worker reads %+v, %v from %s", old, err, e.Value())
	}
	if !strings.Contains(string(e.Value()), `"v":1`) {
		t.Errorf("new entry without its version: %s", e.Value())
	}

	// Old entry, new worker: the broken answer an older worker cached is
	// not served; the answer is generated again and replaces it.
	broken, _ := json.Marshal(oldCachedAnswer{Content: first.Content[:3], FinishReason: "error", Model: "m", Created: time.Now()})
	if _, err := kv.Put(ctx, key, broken); err != nil {
		t.Fatal(err)
	}
	second, err := f.Pub.Complete(ctx, job)
	if err != nil || second.Role != protocol.RoleLeader || second.Cached || second.Content != first.Content || f.LLM.Calls() != 2 {
		t.Fatalf("second: %+v, %v after %d calls; want a fresh answer", second, err, f.LLM.Calls())
	}
	if e, err := kv.Get(ctx, key); err != nil || !strings.Contains(string(e.Value()), `"v":1`) || !strings.Contains(string(e.Value()), `"finish_reason":"stop"`) {
		t.Fatalf("entry not replaced: %s, %v", e.Value(), err)
	}
	third, err := f.Pub.Complete(ctx, job)
	if err != nil || !third.Cached || third.Content != first.Content || f.LLM.Calls() != 2 {
		t.Errorf("third: %+v, %v; want the new entry from the cache", third, err)
	}
}
