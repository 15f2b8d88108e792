package llmtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// errClientGone ends a stream whose client went away.
var errClientGone = errors.New("llmtest: client went away")

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
	if err := s.sendDeltas(ctx, e, deltas, rep); err != nil {
		return err
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

// sendDeltas sends a chunk per delta, each after rep's delay, stalling
// after rep.StallAfter of them and cutting the connection after
// rep.CutAfter, as Reply describes.
func (s *Server) sendDeltas(ctx context.Context, e *events, deltas []delta, rep Reply) error {
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
			return nil
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
