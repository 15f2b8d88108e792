package manager

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// cachedAnswer is a finished answer in the cache bucket.
type cachedAnswer struct {
	Content      string              `json:"content,omitempty"`
	ToolCalls    []protocol.ToolCall `json:"tool_calls,omitempty"`
	Refusal      string              `json:"refusal,omitempty"`
	Reasoning    string              `json:"reasoning_content,omitempty"`
	FinishReason string              `json:"finish_reason"`
	Usage        *protocol.Usage     `json:"usage,omitempty"`
	Model        string              `json:"model"`
	Created      time.Time           `json:"created"`
}

// cacheable reports whether an answer may be cached: never an empty one.
func (a *cachedAnswer) cacheable() bool {
	return a.Content != "" || len(a.ToolCalls) > 0 || a.Refusal != ""
}

// readCache returns the cached answer for key, or nil.
func (m *Manager) readCache(ctx context.Context, key string) (*cachedAnswer, error) {
	e, err := m.top.Cache.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a cachedAnswer
	if err := json.Unmarshal(e.Value(), &a); err != nil {
		return nil, nil // unreadable entry: treat as a miss, the leader overwrites it
	}
	return &a, nil
}

// cacheAnswer caches the answer attempt streamed, read back from the log,
// unless it is empty or larger than the cache takes: such an answer was
// streamed in full and is only not cached. Failures are logged, not fatal:
// the answer has been served either way.
func (g *generation) cacheAnswer(attempt int, res *streamed) {
	limit := int(g.m.top.Config.CacheMaxValueBytes)
	if limit <= 0 {
		limit = math.MaxInt // the bucket takes any size (NATS's -1)
	}
	if res.bytes > limit {
		g.m.cfg.Logger.Debug("answer larger than the cache takes; not cached", "key", g.key, "bytes", res.bytes, "limit", limit)
		return
	}
	a := g.answer(attempt)
	if a == nil || !a.cacheable() {
		return
	}
	a.FinishReason, a.Usage, a.Model, a.Created = res.finishReason, res.usage, g.job.Model, time.Now().UTC()
	b, err := json.Marshal(a)
	if err == nil && len(b) > limit {
		g.m.cfg.Logger.Debug("answer larger than the cache takes once encoded; not cached", "key", g.key, "bytes", len(b), "limit", limit)
		return
	}
	if err == nil {
		ctx, cancel := g.finalContext()
		_, err = g.m.top.Cache.Put(ctx, g.key, b)
		cancel()
	}
	if err != nil {
		g.m.cfg.Logger.Warn("answer not cached", "key", g.key, "bytes", len(b), "err", err)
	}
}

// answer assembles the output of attempt from the log; nil once another
// attempt has started.
func (g *generation) answer(attempt int) *cachedAnswer {
	g.mu.Lock()
	if attempt != g.attempt {
		g.mu.Unlock()
		return nil
	}
	entries := g.log.entries[g.log.base:] // never changed once appended
	g.mu.Unlock()
	var content, refusal, reasoning strings.Builder
	a := &cachedAnswer{}
	for i := range entries {
		e := &entries[i]
		if e.kind != entryChunk {
			continue
		}
		content.WriteString(e.content)
		refusal.WriteString(e.refusal)
		reasoning.WriteString(e.reasoning)
		a.ToolCalls = protocol.MergeToolCalls(a.ToolCalls, e.toolCalls)
	}
	a.Content, a.Refusal, a.Reasoning = content.String(), refusal.String(), reasoning.String()
	return a
}
