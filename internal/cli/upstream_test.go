package cli_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatfleet/chatfleet/internal/fleettest"
	"github.com/chatfleet/chatfleet/llm/llmtest"
	"github.com/chatfleet/chatfleet/protocol"
)

const checkKey = "sk-chatfleet-TOPSECRET-upstream-check"

// useUpstream points the configuration at srv, with an API key.
func useUpstream(t *testing.T, srv *llmtest.Server) {
	t.Setenv("CHATFLEET_LLM_BASE_URL", srv.URL())
	t.Setenv("CHATFLEET_LLM_API_KEY", checkKey)
	t.Setenv("CHATFLEET_MODEL", "probe-model")
	t.Setenv("CHATFLEET_LLM_STREAM_OPTIONS", "true")
}

// line returns the report line of item.
func line(out, item string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, item+" ") {
			return strings.TrimSpace(strings.TrimPrefix(l, item))
		}
	}
	return ""
}

// checkLines runs upstream check and asserts its exit code and, for each
// item, a part of its line; the API key is never printed.
func checkLines(t *testing.T, code int, want map[string]string, args ...string) result {
	t.Helper()
	res := run(fleettest.Context(t, 30*time.Second), "", append([]string{"upstream", "check"}, args...)...)
	if res.code != code {
		t.Errorf("exit %d, want %d\n%v", res.code, code, res)
	}
	for item, part := range want {
		if got := line(res.out, item); !strings.Contains(got, part) {
			t.Errorf("%s: %q, want %q\n%s", item, got, part, res.out)
		}
	}
	if strings.Contains(res.out+res.err, "TOPSECRET") {
		t.Errorf("the API key was printed:\n%v", res)
	}
	return res
}

// TestUpstreamCheck: against a server that streams, lists its models,
// calls tools and reasons, every capability shows.
func TestUpstreamCheck(t *testing.T) {
	srv := llmtest.New(llmtest.WithModels("probe-model", "other"), llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		if _, ok := r.JSON()["tools"]; ok {
			return llmtest.Reply{Reasoning: []string{"I should call it."}, ToolCalls: []protocol.ToolCall{{Function: protocol.FunctionCall{Name: "get_time", Arguments: "{}"}}}}
		}
		return llmtest.Reply{Tokens: []string{"ok"}, KeepAlives: 2}
	}))
	defer srv.Close()
	useUpstream(t, srv)
	checkLines(t, 0, map[string]string{
		"upstream":       strings.TrimSuffix(srv.URL(), "/v1") + "/v1 (API key: set)",
		"model":          "probe-model",
		"models":         "2 listed: other, probe-model",
		"stream_options": "accepted",
		"streaming":      "yes: server-sent events",
		"keep-alives":    "2 SSE comments",
		"finish_reason":  `"stop"`,
		"usage":          "in the stream",
		"tool calls":     "yes: called get_time",
		"reasoning":      "yes",
	})
	if n := srv.Calls(); n != 2 {
		t.Errorf("%d probes, want 2", n)
	}
	for _, r := range srv.Requests() {
		if r.Model() != "probe-model" || r.MaxTokens() == 0 || !r.Stream() {
			t.Errorf("probe %s", r.Body)
		}
	}
	checkLines(t, 0, map[string]string{"models": "; gpt-x is not among them", "model": "gpt-x"}, "--model", "gpt-x")
}

// TestUpstreamCheckDialects: the recorded dialects show up as such.
func TestUpstreamCheckDialects(t *testing.T) {
	byName := map[string]llmtest.Dialect{}
	for _, d := range llmtest.Dialects() {
		byName[d.Name] = d
	}
	for _, tt := range []struct {
		dialect string
		want    map[string]string
	}{
		{"json-completion", map[string]string{"streaming": "no: answered with one JSON chat.completion", "usage": "7 prompt", "reasoning": "yes"}},
		{"no-finish-reason", map[string]string{"finish_reason": `never sent; chatfleet reads the end of the stream as "stop"`, "usage": "not sent"}},
		{"openrouter", map[string]string{"keep-alives": "4 SSE comments", "reasoning": "yes"}},
		{"groq", map[string]string{"usage": "38 prompt + 4 completion", "tool calls": "no: answered with text"}},
		{"ollama-tool-calls", map[string]string{"tool calls": "yes: called get_current_weather"}},
	} {
		t.Run(tt.dialect, func(t *testing.T) {
			srv := llmtest.New(llmtest.WithModels(), llmtest.WithScript(func(llmtest.Request) llmtest.Reply { return byName[tt.dialect].Reply() }))
			defer srv.Close()
			useUpstream(t, srv)
			tt.want["models"] = "not listed: upstream_error (HTTP 404)"
			checkLines(t, 0, tt.want)
		})
	}
}

// TestUpstreamCheckStreamOptionsRefused: an upstream that refuses
// stream_options is named as such, with the setting that fixes it, and
// the rest is checked without them; with the setting, all is well.
func TestUpstreamCheckStreamOptionsRefused(t *testing.T) {
	srv := llmtest.New(llmtest.WithScript(func(r llmtest.Request) llmtest.Reply {
		if _, ok := r.JSON()["stream_options"]; ok {
			return llmtest.Reply{Status: http.StatusBadRequest, Message: "Unrecognized request argument supplied: stream_options"}
		}
		return llmtest.Reply{Tokens: []string{"ok"}}
	}))
	defer srv.Close()
	useUpstream(t, srv)
	checkLines(t, 1, map[string]string{
		"stream_options": "REFUSED: upstream_error (HTTP 400): Unrecognized request argument supplied: stream_options",
		"streaming":      "yes",
		"usage":          "not sent",
	})
	if res := checkLines(t, 1, nil); !strings.Contains(res.out, "CHATFLEET_LLM_STREAM_OPTIONS=false") {
		t.Errorf("the fix is not named:\n%s", res.out)
	}
	t.Setenv("CHATFLEET_LLM_STREAM_OPTIONS", "false")
	checkLines(t, 0, map[string]string{"stream_options": "not sent (CHATFLEET_LLM_STREAM_OPTIONS=false)", "streaming": "yes"})
}

// TestUpstreamCheckFailures: an upstream that is down, or that refuses
// the request, fails the check with the error's code; no upstream
// configured, or a bad command line, is a usage error. Secrets in the
// base URL are never printed.
func TestUpstreamCheckFailures(t *testing.T) {
	srv := llmtest.New(llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Status: http.StatusUnauthorized, Message: "Incorrect API key provided"}
	}))
	defer srv.Close()
	useUpstream(t, srv)
	checkLines(t, 1, map[string]string{"streaming": "FAILED: upstream_error (HTTP 401): Incorrect API key provided"})

	down := llmtest.New()
	down.Close()
	useUpstream(t, down)
	t.Setenv("CHATFLEET_LLM_BASE_URL", strings.Replace(down.URL(), "http://", "http://bob:TOPSECRET@", 1))
	res := checkLines(t, 1, map[string]string{"streaming": "FAILED: upstream_unavailable", "upstream": "bob:xxxxx@"})
	if line(res.out, "tool calls") != "" {
		t.Errorf("probed tools after the stream failed:\n%s", res.out)
	}

	t.Setenv("CHATFLEET_LLM_BASE_URL", "")
	t.Setenv("CHATFLEET_LLM_API_KEY", "")
	t.Setenv("OPENAI_BASE_URL", "")
	t.Setenv("OPENAI_API_KEY", "")
	ctx := fleettest.Context(t, 10*time.Second)
	if res := run(ctx, "", "upstream", "check"); res.code != 2 || !strings.Contains(res.err, "no upstream configured") {
		t.Errorf("no upstream: %v", res)
	}
	for _, args := range [][]string{{"upstream"}, {"upstream", "probe"}, {"upstream", "check", "extra"}, {"upstream", "check", "--timeout", "0s"}} {
		if res := run(ctx, "", args...); res.code != 2 || !strings.Contains(res.err, "Usage: chatfleet upstream check") {
			t.Errorf("%q: %v", args, res)
		}
	}
}
