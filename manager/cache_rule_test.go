package manager

import (
	"testing"

	"github.com/chatfleet/chatfleet/protocol"
)

// TestCacheableRule: which entries are written and served.
func TestCacheableRule(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		a    cachedAnswer
		want bool
	}{
		{"stop", cachedAnswer{Version: cacheVersion, Content: "x", FinishReason: "stop"}, true},
		{"tool_calls", cachedAnswer{Version: cacheVersion, ToolCalls: make([]protocol.ToolCall, 1), FinishReason: "tool_calls"}, true},
		{"length", cachedAnswer{Version: cacheVersion, Content: "x", FinishReason: "length"}, true},
		{"a refusal", cachedAnswer{Version: cacheVersion, Refusal: "no", FinishReason: "stop"}, true},
		{"content_filter", cachedAnswer{Version: cacheVersion, Content: "x", FinishReason: "content_filter"}, false},
		{"error", cachedAnswer{Version: cacheVersion, Content: "x", FinishReason: "error"}, false},
		{"unknown finish", cachedAnswer{Version: cacheVersion, Content: "x", FinishReason: "abort"}, false},
		{"no finish", cachedAnswer{Version: cacheVersion, Content: "x"}, false},
		{"empty", cachedAnswer{Version: cacheVersion, Reasoning: "only thoughts", FinishReason: "stop"}, false},
		{"older format", cachedAnswer{Content: "x", FinishReason: "stop"}, false},
		{"newer format", cachedAnswer{Version: cacheVersion + 1, Content: "x", FinishReason: "stop"}, false},
	} {
		if got := tt.a.cacheable(); got != tt.want {
			t.Errorf("%s: cacheable = %v, want %v", tt.name, got, tt.want)
		}
	}
}
