package llmtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// maxBody bounds a request body.
const maxBody = 32 << 20

// errClientGone ends a stream whose client went away.
var errClientGone = errors.New("llmtest: client went away")

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		writeError(w, http.StatusServiceUnavailable, "server closing", 0)
		return
	}
	defer s.handlers.Done()
	if r.URL.Path == "/v1/models" && r.Method == http.MethodGet {
		s.serveModels(w)
		return
	}
	if r.URL.Path != "/v1/chat/completions" {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown path %q; this server serves /v1/chat/completions", r.URL.Path), 0)
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "use POST", 0)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusBadRequest, "cannot read body: "+err.Error(), 0)
		return
	}
	req := s.record(body, r.Header)
	var wr wireRequest
	if err := json.Unmarshal(body, &wr); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error(), 0)
		return
	}
	if !wr.Stream {
		writeError(w, http.StatusBadRequest, `this server only streams; set "stream": true`, 0)
		return
	}
	rep := s.script(req)
	if rep.Status != 0 {
		msg := rep.Message
		if msg == "" {
			msg = http.StatusText(rep.Status)
		}
		writeError(w, rep.Status, msg, rep.RetryAfter)
		return
	}
	stream := s.stream
	if rep.Raw != nil {
		stream = s.raw
	}
	switch err := stream(w, r, req, wr, rep); {
	case errors.Is(err, errClientGone):
		s.countDisconnect()
	case errors.Is(err, errServerClosing):
		panic(http.ErrAbortHandler) // a server that stops breaks its streams
	}
}

// stream writes rep as server-sent events; wr is req's decoded body. It
// returns errClientGone when the client left before the end,
// errServerClosing when Close interrupted it; a cut panics with
// http.ErrAbortHandler.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, req Request, wr wireRequest, rep Reply) error {
	ctx := r.Context()
	e := &events{
		w:       w,
		rc:      http.NewResponseController(w),
		closing: s.closing,
		id:      fmt.Sprintf("chatcmpl-sim-%d", req.N),
		model:   wr.Model,
		now:     time.Now().Unix(),
	}
	deltas, finish := rep.deltas(req)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if err := s.keepAlives(ctx, e, rep); err != nil {
		return err
	}
	if err := e.send(ctx, []choice{{Delta: delta{Role: "assistant", Content: ptr("")}}}, nil); err != nil {
		return err
	}
	stallAt, cutAt := at(rep.StallAfter), at(rep.CutAfter)
	for i := 0; ; i++ {
		if i == stallAt {
			if err := s.pause(ctx, nil, rep.Release); err != nil {
				return err
			}
		}
		if i == cutAt {
			panic(http.ErrAbortHandler) // net/http closes the connection mid-body, unlogged.
		}
		if i == len(deltas) {
			break
		}
		d := rep.Delay
		if i == 0 {
			d = rep.FirstDelay
		}
		if err := s.pause(ctx, &d, nil); err != nil {
			return err
		}
		if err := e.send(ctx, []choice{{Delta: deltas[i]}}, nil); err != nil {
			return err
		}
	}
	if err := e.send(ctx, []choice{{Delta: delta{}, FinishReason: &finish}}, nil); err != nil {
		return err
	}
	if wr.includeUsage() {
		prompt := wr.promptWords()
		u := &usage{PromptTokens: prompt, CompletionTokens: len(deltas), TotalTokens: prompt + len(deltas)}
		if err := e.send(ctx, []choice{}, u); err != nil {
			return err
		}
	}
	if rep.OmitDone {
		return nil
	}
	// The client may hang up as soon as it reads [DONE]; that is not a
	// disconnect, so only a failed write counts here.
	if err := e.write(context.Background(), []byte("data: [DONE]\n\n")); err != nil {
		return goneErr(s.closing)
	}
	return nil
}

// keepAlives sends rep's keep-alive comments.
func (s *Server) keepAlives(ctx context.Context, e *events, rep Reply) error {
	comment := rep.KeepAliveComment
	if comment == "" {
		comment = ": OPENROUTER PROCESSING"
	}
	line := []byte(comment + "\n\n")
	for i := 0; rep.KeepAlives < 0 || i < rep.KeepAlives; i++ {
		if rep.KeepAlives < 0 && isClosed(rep.Release) {
			return nil
		}
		if d := rep.KeepAliveEvery; d > 0 {
			if err := s.pause(ctx, &d, nil); err != nil {
				return err
			}
		}
		if err := e.write(ctx, line); err != nil {
			return err
		}
	}
	return nil
}

// isClosed reports whether ch is closed; a nil ch never is.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// raw writes rep.Raw verbatim, with the same return values as stream.
func (s *Server) raw(w http.ResponseWriter, r *http.Request, _ Request, _ wireRequest, rep Reply) error {
	ctx := r.Context()
	ct := rep.ContentType
	if ct == "" {
		ct = "text/event-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	e := &events{w: w, rc: http.NewResponseController(w), closing: s.closing}
	for i, piece := range rep.Raw {
		d := rep.Delay
		if i == 0 {
			d = rep.FirstDelay
		}
		if d > 0 {
			if err := s.pause(ctx, &d, nil); err != nil {
				return err
			}
		}
		if err := e.write(ctx, []byte(piece)); err != nil {
			return err
		}
	}
	return nil
}

// serveModels answers GET /v1/models with the OpenAI model list.
func (s *Server) serveModels(w http.ResponseWriter) {
	ids := s.models
	if !s.modelsSet {
		ids = []string{"llmtest"}
	}
	if len(ids) == 0 {
		writeError(w, http.StatusNotFound, "this server has no /v1/models", 0)
		return
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	list := struct {
		Object string  `json:"object"`
		Data   []model `json:"data"`
	}{Object: "list"}
	for _, id := range ids {
		list.Data = append(list.Data, model{ID: id, Object: "model", Created: 1_700_000_000, OwnedBy: "llmtest"})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(list)
}

// at turns a StallAfter/CutAfter into the token index it applies before:
// 0 (off) becomes -1 (never), -1 becomes 0.
func at(n int) int {
	switch {
	case n == 0:
		return -1
	case n < 0:
		return 0
	default:
		return n
	}
}

// pause waits for d (when d is not nil) or for release to be closed (when
// d is nil; a nil release never is), unless the client leaves or the
// server closes first.
func (s *Server) pause(ctx context.Context, d *time.Duration, release <-chan struct{}) error {
	var timeout <-chan time.Time
	if d != nil {
		if *d <= 0 {
			return gone(ctx, s.closing)
		}
		t := time.NewTimer(*d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return nil
	case <-release:
		return nil
	case <-s.closing:
		return errServerClosing
	case <-ctx.Done():
		return goneErr(s.closing)
	}
}

// gone reports, without blocking, whether the client or server has gone.
func gone(ctx context.Context, closing <-chan struct{}) error {
	select {
	case <-closing:
		return errServerClosing
	case <-ctx.Done():
		return goneErr(closing)
	default:
		return nil
	}
}

// goneErr blames the server when it is closing (which also cancels the
// requests), the client otherwise.
func goneErr(closing <-chan struct{}) error {
	select {
	case <-closing:
		return errServerClosing
	default:
		return errClientGone
	}
}

// events writes one stream's server-sent events.
type events struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	closing <-chan struct{}
	id      string
	model   string
	now     int64
}

func (e *events) send(ctx context.Context, choices []choice, u *usage) error {
	b, err := json.Marshal(chunk{
		ID: e.id, Object: "chat.completion.chunk", Created: e.now, Model: e.model,
		Choices: choices, Usage: u,
	})
	if err != nil {
		return err
	}
	return e.write(ctx, append(append([]byte("data: "), b...), '\n', '\n'))
}

func (e *events) write(ctx context.Context, b []byte) error {
	_, err := e.w.Write(b)
	if err == nil {
		err = e.rc.Flush()
	}
	if err != nil || ctx.Err() != nil {
		return goneErr(e.closing)
	}
	return nil
}

// deltas returns the reply's token deltas and its finish reason.
func (rep Reply) deltas(req Request) ([]delta, string) {
	tokens, finish := rep.Tokens, rep.FinishReason
	if tokens == nil && rep.ToolCalls == nil && rep.Refusal == nil {
		def := DefaultReply(req)
		tokens = def.Tokens
		if finish == "" {
			finish = def.FinishReason
		}
	}
	var out []delta
	for _, t := range rep.Reasoning {
		out = append(out, delta{ReasoningContent: t})
	}
	for _, t := range tokens {
		out = append(out, delta{Content: ptr(t)})
	}
	for _, t := range rep.Refusal {
		out = append(out, delta{Refusal: t})
	}
	for i, tc := range rep.ToolCalls {
		id, typ := tc.ID, tc.Type
		if id == "" {
			id = fmt.Sprintf("call_%d_%d", req.N, i)
		}
		if typ == "" {
			typ = "function"
		}
		out = append(out, delta{ToolCalls: []toolCallDelta{{
			Index: i, ID: id, Type: typ, Function: functionDelta{Name: tc.Function.Name},
		}}})
		for _, piece := range splitArguments(tc.Function.Arguments) {
			out = append(out, delta{ToolCalls: []toolCallDelta{{
				Index: i, Function: functionDelta{Arguments: piece},
			}}})
		}
	}
	if finish == "" {
		finish = "stop"
		if len(rep.ToolCalls) > 0 {
			finish = "tool_calls"
		}
	}
	return out, finish
}

// splitArguments cuts a tool call's arguments into two or three pieces at
// rune boundaries (one when it is shorter than two runes).
func splitArguments(args string) []string {
	runes := []rune(args)
	if len(runes) < 2 {
		return []string{args}
	}
	size := (len(runes) + 2) / 3
	var pieces []string
	for len(runes) > 0 {
		n := min(size, len(runes))
		pieces = append(pieces, string(runes[:n]))
		runes = runes[n:]
	}
	return pieces
}

// writeError answers with status and the OpenAI error JSON.
func writeError(w http.ResponseWriter, status int, msg string, retryAfter time.Duration) {
	typ, code := errorKind(status)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message": msg, "type": typ, "param": nil, "code": code,
	}})
}

// errorKind returns the OpenAI error type and code for a status.
func errorKind(status int) (typ string, code any) {
	switch {
	case status == http.StatusUnauthorized:
		return "invalid_request_error", "invalid_api_key"
	case status == http.StatusForbidden:
		return "permission_error", nil
	case status == http.StatusNotFound:
		return "invalid_request_error", "model_not_found"
	case status == http.StatusTooManyRequests:
		return "requests", "rate_limit_exceeded"
	case status >= 500:
		return "server_error", nil
	default:
		return "invalid_request_error", nil
	}
}

// The chat.completion.chunk wire format.
type (
	chunk struct {
		ID      string   `json:"id"`
		Object  string   `json:"object"`
		Created int64    `json:"created"`
		Model   string   `json:"model"`
		Choices []choice `json:"choices"`
		Usage   *usage   `json:"usage,omitempty"`
	}
	choice struct {
		Index        int     `json:"index"`
		Delta        delta   `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	}
	delta struct {
		Role             string          `json:"role,omitempty"`
		Content          *string         `json:"content,omitempty"`
		ToolCalls        []toolCallDelta `json:"tool_calls,omitempty"`
		Refusal          string          `json:"refusal,omitempty"`
		ReasoningContent string          `json:"reasoning_content,omitempty"`
	}
	toolCallDelta struct {
		Index    int           `json:"index"`
		ID       string        `json:"id,omitempty"`
		Type     string        `json:"type,omitempty"`
		Function functionDelta `json:"function"`
	}
	functionDelta struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments,omitempty"`
	}
	usage protocol.Usage
)

func ptr[T any](v T) *T { return &v }
