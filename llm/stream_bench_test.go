package llm

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

// BenchmarkStreamRecv streams an answer shaped like OpenAI's (a role
// chunk, content chunks with every field OpenAI sends, a finish chunk, a
// usage chunk, [DONE]) through the real client, go-openai inside, and
// reads it with Recv. Besides the per-answer figures it reports the cost
// per chunk. Over "httptest" the test server's writes are in the figures
// too; "memory" hands the client a body that returns one event per Read,
// as a paced upstream does, so it measures the client alone.
func BenchmarkStreamRecv(b *testing.B) {
	for _, tokens := range []int{16, 256} {
		events := openAIEvents(tokens)
		b.Run(fmt.Sprintf("httptest/tokens=%d", tokens), func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "text/event-stream")
				rc := http.NewResponseController(w)
				for _, e := range events {
					_, _ = w.Write(e)
					_ = rc.Flush() // one chunked write per event, as an upstream sends them
				}
			}))
			defer srv.Close()
			c, err := New(Config{BaseURL: srv.URL + "/v1", APIKey: "sk-bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer c.cfg.HTTPClient.CloseIdleConnections()
			benchRecv(b, c, tokens, len(events))
		})
		b.Run(fmt.Sprintf("memory/tokens=%d", tokens), func(b *testing.B) {
			c, err := New(Config{
				BaseURL:    "http://upstream.invalid/v1",
				HTTPClient: &http.Client{Transport: eventsTransport(events)},
			})
			if err != nil {
				b.Fatal(err)
			}
			benchRecv(b, c, tokens, len(events))
		})
	}
}

// benchRecv reads a whole answer per iteration and reports ns, the
// process's CPU time (the GC's included), B and allocations per chunk
// (every event but [DONE]).
func benchRecv(b *testing.B, c *Client, tokens, events int) {
	j := job("say something")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu := processCPU()
	b.ReportAllocs()
	for b.Loop() {
		s, err := c.Stream(b.Context(), j)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			d, err := s.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if d.Content != "" {
				n++
			}
		}
		_ = s.Close()
		if n != tokens {
			b.Fatalf("%d content deltas, want %d", n, tokens)
		}
	}
	cpu = processCPU() - cpu
	runtime.ReadMemStats(&after)
	chunks := float64(b.N * (events - 1))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/chunks, "ns/chunk")
	b.ReportMetric(float64(cpu.Nanoseconds())/chunks, "cpu-ns/chunk")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/chunks, "B/chunk")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/chunks, "allocs/chunk")
}

// openAIEvents is an answer of tokens content chunks as OpenAI streams it
// with stream_options.include_usage, one SSE event per element.
func openAIEvents(tokens int) [][]byte {
	const head = `{"id":"chatcmpl-BqYXQ1eVxD4ZkL7rTg2mNc8pW3sHf","object":"chat.completion.chunk","created":1751892000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c",`
	var evs [][]byte
	add := func(rest string) {
		evs = append(evs, []byte("data: "+head+rest+"\n\n"))
	}
	add(`"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"x3Rk"}`)
	words := strings.Fields("The quick brown fox jumps over the lazy dog while a small bird sings in the old oak tree")
	for i := range tokens {
		add(fmt.Sprintf(`"choices":[{"index":0,"delta":{"content":" %s"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"qZ8w"}`, words[i%len(words)]))
	}
	add(`"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null,"obfuscation":"Vt0"}`)
	add(fmt.Sprintf(`"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"obfuscation":"pL"}`, tokens, 12+tokens))
	return append(evs, []byte("data: [DONE]\n\n"))
}

// eventsTransport answers every request with events as an event stream,
// one event per Read of the body.
type eventsTransport [][]byte

func (t eventsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {"text/event-stream"}},
		Body:       &eventsBody{events: t},
		Request:    req,
	}, nil
}

// eventsBody returns one event per Read, as a paced upstream's chunked
// body does.
type eventsBody struct {
	events [][]byte
	cur    bytes.Reader
}

func (e *eventsBody) Read(p []byte) (int, error) {
	if e.cur.Len() == 0 {
		if len(e.events) == 0 {
			return 0, io.EOF
		}
		e.cur.Reset(e.events[0])
		e.events = e.events[1:]
	}
	return e.cur.Read(p)
}

func (e *eventsBody) Close() error { return nil }
