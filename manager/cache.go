package manager

import (
	"context"
	"encoding/json"
	"errors"
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

// writeCache stores a finished answer; failures are logged, not fatal:
// the answer has been served either way.
func (m *Manager) writeCache(ctx context.Context, key string, a *cachedAnswer) {
	b, err := json.Marshal(a)
	if err == nil {
		_, err = m.top.Cache.Put(ctx, key, b)
	}
	if err != nil {
		m.cfg.Logger.Warn("answer not cached", "key", key, "bytes", len(b), "err", err)
	}
}
