package llmtest

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRawReplaysBodyVerbatim(t *testing.T) {
	t.Parallel()
	pieces := []string{": hello\r\n\r\n", "data:{\"x\":1}\r\n", "\r\n"}
	s := setup(t, WithScript(func(Request) Reply { return Reply{Raw: pieces, ContentType: "text/plain"} }))
	resp := post(t, t.Context(), s, body("m", "x", true))
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != strings.Join(pieces, "") || resp.Header.Get("Content-Type") != "text/plain" {
		t.Errorf("body %q, content type %q", b, resp.Header.Get("Content-Type"))
	}
	if s.Calls() != 1 {
		t.Errorf("calls %d", s.Calls())
	}
}

func TestKeepAlivesBeforeTheFirstChunk(t *testing.T) {
	t.Parallel()
	s := setup(t, WithScript(func(Request) Reply {
		return Reply{Tokens: []string{"a"}, KeepAlives: 3, KeepAliveComment: ": keep-alive"}
	}))
	resp := post(t, t.Context(), s, body("m", "x", false))
	sc := bufio.NewScanner(resp.Body)
	var lines []string
	for sc.Scan() {
		if sc.Text() != "" {
			lines = append(lines, sc.Text())
		}
	}
	if len(lines) < 4 || lines[0] != ": keep-alive" || lines[2] != ": keep-alive" || !strings.HasPrefix(lines[3], "data: ") {
		t.Fatalf("lines %q", lines)
	}
	if lines[len(lines)-1] != "data: [DONE]" {
		t.Errorf("last line %q", lines[len(lines)-1])
	}
}

// TestKeepAlivesUntilRelease: -1 sends comments until Release, then the
// reply streams.
func TestKeepAlivesUntilRelease(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	s := setup(t, WithScript(func(Request) Reply {
		return Reply{Tokens: []string{"a"}, KeepAlives: -1, KeepAliveEvery: time.Millisecond, Release: release}
	}))
	resp := post(t, t.Context(), s, body("m", "x", false))
	r := bufio.NewReader(resp.Body)
	for n := 0; n < 5; {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == ": OPENROUTER PROCESSING\n" {
			n++
		}
	}
	close(release)
	rest, err := io.ReadAll(r)
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("after release: %q, %v", rest, err)
	}
}

func TestModels(t *testing.T) {
	t.Parallel()
	get := func(s *Server) (*http.Response, []string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL()+"/models", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list struct {
			Data []struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&list)
		var ids []string
		for _, m := range list.Data {
			ids = append(ids, m.ID)
		}
		return resp, ids
	}
	if _, ids := get(setup(t)); strings.Join(ids, ",") != "llmtest" {
		t.Errorf("default models %v", ids)
	}
	if _, ids := get(setup(t, WithModels("a", "b"))); strings.Join(ids, ",") != "a,b" {
		t.Errorf("models %v", ids)
	}
	s := setup(t, WithModels())
	if resp, _ := get(s); resp.StatusCode != http.StatusNotFound {
		t.Errorf("WithModels(): status %d, want 404", resp.StatusCode)
	}
	if s.Calls() != 0 {
		t.Errorf("a models request counted as a chat completion")
	}
}

// TestDialectsLoad: every dialect has its recorded body, ending the way
// its server ends a stream, and an expected outcome.
func TestDialectsLoad(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, d := range Dialects() {
		if seen[d.Name] || len(d.Body) == 0 || d.Server == "" || d.Source == "" {
			t.Errorf("dialect %q: duplicate or incomplete", d.Name)
		}
		seen[d.Name] = true
		if d.Want.Code == "" && d.Want.FinishReason == "" {
			t.Errorf("dialect %q: no expected finish reason or error", d.Name)
		}
		if d.ContentType == "application/json" && !json.Valid(d.Body) {
			t.Errorf("dialect %q: not JSON", d.Name)
		}
	}
	s := setup(t, WithScript(func(r Request) Reply {
		for _, d := range Dialects() {
			if d.Name == r.LastUserMessage() {
				return d.Reply()
			}
		}
		return Reply{Status: 404}
	}))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	b, err := io.ReadAll(post(t, ctx, s, body("m", "crlf", true)).Body)
	if err != nil || !strings.Contains(string(b), "\r\n\r\n") {
		t.Errorf("crlf dialect replayed as %q, %v", b, err)
	}
}

func TestCallsFor(t *testing.T) {
	t.Parallel()
	s := setup(t)
	for _, p := range []string{"a", "b", "a"} {
		_, _ = io.ReadAll(post(t, t.Context(), s, body("m", p, false)).Body)
	}
	if s.CallsFor("a") != 2 || s.CallsFor("b") != 1 || s.CallsFor("c") != 0 {
		t.Errorf("CallsFor: a %d, b %d, c %d", s.CallsFor("a"), s.CallsFor("b"), s.CallsFor("c"))
	}
}
