package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	openai "github.com/sashabaranov/go-openai"

	"github.com/chatfleet/chatfleet/llm/llmtest"
)

// answerTokens is the number of content chunks every benchmark answer has.
const answerTokens = 16

// tokens16 are the answer's tokens: 16 short words.
var tokens16 = func() []string {
	t := make([]string, answerTokens)
	for i := range t {
		t[i] = fmt.Sprintf("tok%02d ", i)
	}
	return t
}()

// instantUpstream streams the 16 tokens at once, every call.
func instantUpstream() *llmtest.Server {
	return llmtest.New(llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Tokens: tokens16}
	}))
}

// delayedUpstream takes total per answer, spread evenly before each token
// (so with a total above 16 × the chunk window every token is its own
// chunk event).
func delayedUpstream(total time.Duration) *llmtest.Server {
	step := total / answerTokens
	return llmtest.New(llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Tokens: tokens16, FirstDelay: step, Delay: step}
	}))
}

// gatedUpstream sends stallAfter tokens (-1: none), then holds every
// stream until gate is closed, then sends the rest at once.
func gatedUpstream(gate <-chan struct{}, stallAfter int) *llmtest.Server {
	return llmtest.New(llmtest.WithScript(func(llmtest.Request) llmtest.Reply {
		return llmtest.Reply{Tokens: tokens16, StallAfter: stallAfter, Release: gate}
	}))
}

// stallingUpstream answers a warm-up prompt (one holding " warm ") at
// once and holds every other stream after two tokens until gate is
// closed, then sends the rest.
func stallingUpstream(gate <-chan struct{}) *llmtest.Server {
	return llmtest.New(llmtest.WithScript(func(req llmtest.Request) llmtest.Reply {
		if strings.Contains(req.LastUserMessage(), " warm ") {
			return llmtest.Reply{Tokens: tokens16}
		}
		return llmtest.Reply{Tokens: tokens16, StallAfter: 2, Release: gate}
	}))
}

// stampUpstream is a minimal OpenAI-compatible streaming server whose
// every token is the time it was written, in Unix nanoseconds, followed by
// '|': the producer, on the same clock, computes how long each token took
// to reach it. llmtest decides a reply's tokens before it sends the first
// one, so it cannot stamp them at the moment of writing.
type stampUpstream struct {
	srv    *http.Server
	url    string
	served chan struct{}

	mu             sync.Mutex
	first, between time.Duration
}

// newStampUpstream starts a stamping server: first is waited before the
// first token, between before each other one.
func newStampUpstream(first, between time.Duration) (*stampUpstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &stampUpstream{url: "http://" + ln.Addr().String() + "/v1", served: make(chan struct{}), first: first, between: between}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { // owned by close, which waits for served
		defer close(s.served)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

func (s *stampUpstream) URL() string { return s.url }

// setDelays changes the delays of the streams that start from now on.
func (s *stampUpstream) setDelays(first, between time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.first, s.between = first, between
}

func (s *stampUpstream) close() {
	_ = s.srv.Close()
	<-s.served
}

func (s *stampUpstream) serve(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model         string `json:"model"`
		StreamOptions *struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	first, between := s.first, s.between
	s.mu.Unlock()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	created := time.Now().Unix()
	send := func(delta, finish string, usage bool) error {
		if _, err := io.WriteString(w, chunkEvent(created, req.Model, delta, finish, usage)); err != nil {
			return err
		}
		return rc.Flush()
	}
	if send(`"role":"assistant","content":""`, "", false) != nil {
		return
	}
	for i := range answerTokens {
		d := between
		if i == 0 {
			d = first
		}
		if d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		if send(`"content":"`+strconv.FormatInt(time.Now().UnixNano(), 10)+`|"`, "", false) != nil {
			return
		}
	}
	if send("", "stop", false) != nil {
		return
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage && send("", "", true) != nil {
		return
	}
	_, _ = io.WriteString(w, "data: [DONE]\n\n")
	_ = rc.Flush()
}

// chunkEvent is one event of a chat.completion.chunk stream: the usage
// chunk (usage), the last chunk (finish is its finish_reason), or else a
// chunk whose delta holds the JSON members delta.
func chunkEvent(created int64, model, delta, finish string, usage bool) string {
	var b strings.Builder
	b.WriteString(`data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":`)
	b.WriteString(strconv.FormatInt(created, 10))
	b.WriteString(`,"model":`)
	m, _ := json.Marshal(model)
	b.Write(m)
	switch {
	case usage:
		b.WriteString(`,"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":16,"total_tokens":20}}`)
	case finish != "":
		b.WriteString(`,"choices":[{"index":0,"delta":{},"finish_reason":"` + finish + `"}]}`)
	default:
		b.WriteString(`,"choices":[{"index":0,"delta":{` + delta + `},"finish_reason":null}]}`)
	}
	b.WriteString("\n\n")
	return b.String()
}

// parseStamps returns, for each stamped token in content, how long ago
// (relative to now) it was written.
func parseStamps(content string, now time.Time, out []time.Duration) []time.Duration {
	for tok := range strings.SplitSeq(content, "|") {
		if tok == "" {
			continue
		}
		ns, err := strconv.ParseInt(tok, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, now.Sub(time.Unix(0, ns)))
	}
	return out
}

// directTTFC calls url n times in a row, directly with go-openai (the
// client chatfleet's workers use), and returns each call's time to its
// first content token: the upstream's own time to first chunk.
func directTTFC(ctx context.Context, url string, n int) ([]time.Duration, error) {
	cfg := openai.DefaultConfig("bench")
	cfg.BaseURL = url
	cfg.HTTPClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer cfg.HTTPClient.(*http.Client).CloseIdleConnections()
	client := openai.NewClientWithConfig(cfg)
	out := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		stream, err := client.CreateChatCompletionStream(ctx, openai.ChatCompletionRequest{
			Model:         "bench-model",
			Messages:      []openai.ChatCompletionMessage{{Role: "user", Content: fmt.Sprintf("direct %d", i)}},
			Stream:        true,
			StreamOptions: &openai.StreamOptions{IncludeUsage: true},
		})
		if err != nil {
			return nil, err
		}
		first := time.Duration(0)
		for {
			resp, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				stream.Close()
				return nil, err
			}
			if first == 0 && len(resp.Choices) > 0 && resp.Choices[0].Delta.Content != "" {
				first = time.Since(start)
			}
		}
		stream.Close()
		out = append(out, first)
	}
	return out, nil
}

// gate is a release channel closed once.
type gate struct {
	ch   chan struct{}
	once sync.Once
}

func newGate() *gate { return &gate{ch: make(chan struct{})} }

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }
