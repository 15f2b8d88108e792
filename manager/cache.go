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

// cacheVersion is the format of the entries this worker writes and
// serves. Version 1 (entries with "v") holds only answers that finished
// as cacheableFinishes say; entries without it were written by workers
// that cached any finish ("error", "content_filter" included) and are
// misses here: the leader that answers the request instead overwrites
// them. Workers of before version 1 ignore "v" and serve the new entries
// as they are, which is right: they hold nothing but whole answers.
//
// Version 2 is an answer that ran fleet tools: it holds their calls and
// results (Tools), replayed as tool events. Workers that know only
// version 1 read it as a miss; answers without tools stay version 1, so
// they serve them.
const (
	cacheVersion      = 1
	cacheVersionTools = 2
)

// cacheableFinishes are the finish reasons of an answer that may be
// cached: one that ended as the model meant it to, and that an identical
// request would get again. "length" is cached too: the token limit is
// part of the request, and so of its key. Never cached: "content_filter"
// (a filter cut it), "error" and every answer that ended in an error
// (mid-stream provider errors, broken streams, answer_too_large),
// cancelled or timed-out generations, and finish reasons this list does
// not know (vLLM's "abort", …).
var cacheableFinishes = map[string]bool{"stop": true, "tool_calls": true, "length": true, "function_call": true}

// cachedAnswer is a finished answer in the cache bucket.
type cachedAnswer struct {
	Version   int                 `json:"v"`
	Content   string              `json:"content,omitempty"`
	ToolCalls []protocol.ToolCall `json:"tool_calls,omitempty"`
	Refusal   string              `json:"refusal,omitempty"`
	Reasoning string              `json:"reasoning_content,omitempty"`
	// Tools are the fleet tool calls the answer ran, each as its final
	// tool event with the call's arguments (version 2).
	Tools        []protocol.ToolEvent `json:"tools,omitempty"`
	FinishReason string               `json:"finish_reason"`
	Usage        *protocol.Usage      `json:"usage,omitempty"`
	Model        string               `json:"model"`
	Created      time.Time            `json:"created"`
}

// cacheable reports whether an answer may be cached and served: of this
// format, with a cacheable finish, never an empty one.
func (a *cachedAnswer) cacheable() bool {
	return a.Version == a.version() && cacheableFinishes[a.FinishReason] &&
		(a.Content != "" || len(a.ToolCalls) > 0 || a.Refusal != "")
}

// version is the format a's content needs.
func (a *cachedAnswer) version() int {
	if len(a.Tools) > 0 {
		return cacheVersionTools
	}
	return cacheVersion
}

// readCache returns the cached answer for key, or nil.
func (m *Manager) readCache(ctx context.Context, key string) (*cachedAnswer, error) {
	e, err := m.topo.Cache.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a cachedAnswer
	if err := json.Unmarshal(e.Value(), &a); err != nil || !a.cacheable() {
		return nil, nil // unreadable, older or not to be served: a miss, the leader overwrites it
	}
	return &a, nil
}

// cacheAnswer caches the answer generation gen streamed, read back from the log,
// unless its finish is not cacheable, it is empty or larger than the
// cache takes: such an answer was streamed in full and is only not
// cached. Failures are logged, not fatal: the answer has been served
// either way.
func (h *hub) cacheAnswer(gen int, res *streamed) {
	if !cacheableFinishes[res.finishReason] {
		h.m.cfg.Logger.Debug("answer not cached: its finish is not cacheable", "key", h.dedupeKey, "finish_reason", res.finishReason)
		return
	}
	limit := int(h.m.topo.Config.CacheMaxValueBytes)
	if limit <= 0 {
		limit = math.MaxInt // the bucket takes any size (NATS's -1)
	}
	if res.bytes > limit {
		h.m.cfg.Logger.Debug("answer larger than the cache takes; not cached", "key", h.dedupeKey, "bytes", res.bytes, "limit", limit)
		return
	}
	a := h.answer(gen)
	if a == nil {
		return
	}
	a.Version, a.FinishReason, a.Usage, a.Model, a.Created = a.version(), res.finishReason, res.usage, h.job.Model, time.Now().UTC()
	if !a.cacheable() {
		return
	}
	b, err := json.Marshal(a)
	if err == nil && len(b) > limit {
		h.m.cfg.Logger.Debug("answer larger than the cache takes once encoded; not cached", "key", h.dedupeKey, "bytes", len(b), "limit", limit)
		return
	}
	if err == nil {
		ctx, cancel := h.finalContext()
		_, err = h.m.topo.Cache.Put(ctx, h.dedupeKey, b)
		cancel()
	}
	if err != nil {
		h.m.cfg.Logger.Warn("answer not cached", "key", h.dedupeKey, "bytes", len(b), "err", err)
	}
}

// answer assembles the output of generation gen from the log; nil once
// another generation has started.
func (h *hub) answer(gen int) *cachedAnswer {
	h.mu.Lock()
	if gen != h.gen {
		h.mu.Unlock()
		return nil
	}
	entries := h.log.entries[h.log.base:] // never changed once appended
	h.mu.Unlock()
	var content, refusal, reasoning strings.Builder
	a := &cachedAnswer{}
	args := map[string]string{} // by call ID: the arguments of a started call
	for i := range entries {
		e := &entries[i]
		if e.kind == entryTool {
			switch t := e.tool; {
			case t.State == protocol.ToolStarted:
				args[t.CallID] = t.Arguments
			case t.Final():
				final := *t
				final.Arguments = args[t.CallID]
				a.Tools = append(a.Tools, final)
			}
		}
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
