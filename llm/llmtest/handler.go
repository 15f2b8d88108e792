package llmtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"
)

// maxBody bounds a request body.
const maxBody = 32 << 20

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
	defer s.finished(req)
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
