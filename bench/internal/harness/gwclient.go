package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// benchAnswer is the whole answer of every benchmark job: its tokens in
// a row.
var benchAnswer = strings.Join(tokens16, "")

// gatewayClient calls a gateway's POST /v1/chat/completions as an
// application without an SDK would: plain net/http on keep-alive
// connections, the stream read line by line.
type gatewayClient struct {
	url  string // http://host:port/v1/chat/completions
	key  string // API key, sent as a bearer token
	http *http.Client
}

// newGatewayClient returns a client of the gateway at base (…/v1) keeping
// up to conns connections alive: one per concurrent request.
func newGatewayClient(base, key string, conns int) *gatewayClient {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute, DisableCompression: true}
	return &gatewayClient{url: base + "/chat/completions", key: key, http: &http.Client{Transport: tr}}
}

func (c *gatewayClient) close() { c.http.CloseIdleConnections() }

// chatRequest is the body the client sends.
type chatRequest struct {
	Model    string        `json:"model"`
	Stream   bool          `json:"stream"`
	Messages []chatMessage `json:"messages"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ask sends prompt, streamed or not, reads the answer to its end and
// records it in rec as runJob records a job: submit before the request,
// first at the first content delta, done at [DONE] (or the whole
// completion read). An answer other than benchAnswer is an error.
func (c *gatewayClient) ask(ctx context.Context, prompt string, stream bool, rec *jobRec) {
	ctx, cancel := context.WithTimeout(ctx, defaultJobTimeout)
	defer cancel()
	body, err := json.Marshal(chatRequest{Model: "bench-model", Stream: stream, Messages: []chatMessage{{Role: "user", Content: prompt}}})
	if err != nil {
		rec.err = err
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		rec.err = err
		return
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	rec.submit = time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		rec.err = fmt.Errorf("post: %w", err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		rec.err = fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
		return
	}
	var answer string
	if stream {
		answer, err = readSSE(resp.Body, rec)
	} else {
		answer, err = readCompletion(resp.Body, rec)
	}
	switch {
	case err != nil:
		rec.err = err
	case answer != benchAnswer:
		rec.err = fmt.Errorf("answer %q, want %q", answer, benchAnswer)
	default:
		rec.term = protocol.EventDone
	}
}

// sseChunk is the part of a chat.completion.chunk (or a mid-stream
// error) the client reads.
type sseChunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
	} `json:"choices"`
	Error *struct {
		Message string `json:"message"`
		Code    string `json:"code"`
	} `json:"error"`
}

// readSSE reads a chunk stream to data: [DONE], counting its data events
// and content chunks in rec, and returns the content.
func readSSE(body io.Reader, rec *jobRec) (string, error) {
	br := bufio.NewReader(body)
	var answer strings.Builder
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return answer.String(), fmt.Errorf("after %d events, without [DONE]: %w", rec.events, err)
		}
		data, ok := bytes.CutPrefix(line, []byte("data: "))
		if !ok {
			continue // id:, a comment or the blank line ending an event
		}
		now := time.Now()
		rec.events++
		data = bytes.TrimSpace(data)
		if string(data) == "[DONE]" {
			rec.done = now
			return answer.String(), nil
		}
		var ch sseChunk
		if err := json.Unmarshal(data, &ch); err != nil {
			return answer.String(), fmt.Errorf("event %d: %w", rec.events, err)
		}
		if ch.Error != nil {
			return answer.String(), fmt.Errorf("error event: %s: %s", ch.Error.Code, ch.Error.Message)
		}
		if len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
			if rec.first.IsZero() {
				rec.first = now
			}
			rec.chunks++
			answer.WriteString(ch.Choices[0].Delta.Content)
		}
	}
}

// readCompletion reads a whole chat.completion and returns its content.
func readCompletion(body io.Reader, rec *jobRec) (string, error) {
	var c struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.NewDecoder(body).Decode(&c); err != nil {
		return "", fmt.Errorf("completion: %w", err)
	}
	rec.done = time.Now()
	rec.events = 1
	if len(c.Choices) == 0 {
		return "", errors.New("completion without choices")
	}
	return c.Choices[0].Message.Content, nil
}
