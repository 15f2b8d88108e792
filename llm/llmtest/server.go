package llmtest

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server is an OpenAI-compatible chat-completions server on 127.0.0.1.
// Its methods are safe for concurrent use.
type Server struct {
	script         func(Request) Reply
	first, between time.Duration
	tokens         int  // WithTokens
	toolUse        bool // WithToolUse
	models         []string
	modelsSet      bool // WithModels was given

	url     string
	srv     *http.Server
	served  chan struct{} // closed when Serve returns
	closing chan struct{} // closed by Close: unblocks stalls and delays

	mu          sync.Mutex
	closed      bool
	handlers    sync.WaitGroup // running handlers; Add only under mu while !closed
	requests    []Request
	spans       []span // one per chat-completion request, by N-1 (concurrency.go)
	clock       int64  // orders span starts and ends
	disconnects int
	changed     chan struct{} // closed and replaced whenever a count changes
	conns       atomic.Int64  // TCP connections accepted
	closeOnce   sync.Once
}

// New starts a server listening on 127.0.0.1 on a free port. It panics if it
// cannot listen, like net/http/httptest. Close stops it.
func New(opts ...Option) *Server {
	s, err := Listen("127.0.0.1:0", opts...)
	if err != nil {
		panic("llmtest: cannot listen: " + err.Error())
	}
	return s
}

// Listen starts a server listening on addr (host:port; port 0 picks a
// free one), or returns the listen error. Close stops it.
func Listen(addr string, opts ...Option) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{
		served:  make(chan struct{}),
		closing: make(chan struct{}),
		changed: make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	if s.script == nil {
		first, between, tokens, toolUse := s.first, s.between, s.tokens, s.toolUse
		s.script = func(r Request) Reply {
			rep, ok := ToolUseReply(r, tokens)
			if !toolUse || !ok {
				rep = defaultReply(r, tokens)
			}
			rep.FirstDelay, rep.Delay = first, between
			return rep
		}
	}
	s.url = "http://" + ln.Addr().String() + "/v1"
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: 10 * time.Second,
		// Aborted streams and clients that leave are the point of this
		// server; do not log them.
		ErrorLog: log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.conns.Add(1)
			}
		},
	}
	go func() { // Owned by Close, which waits for served.
		defer close(s.served)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Conns returns how many TCP connections clients have opened: streams
// that reuse connections keep it low.
func (s *Server) Conns() int { return int(s.conns.Load()) }

// URL returns the server's base URL, ending in /v1.
func (s *Server) URL() string { return s.url }

// Close stops the server: it stops listening, ends stalled and delayed
// streams, closes all connections and waits for every handler to return.
// It is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.closing)
		_ = s.srv.Close()
		s.handlers.Wait()
		<-s.served
	})
}

// Calls returns the number of chat-completion requests received, including
// those answered with an error.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// CallsFor returns the number of chat-completion requests received whose
// last user message is prompt.
func (s *Server) CallsFor(prompt string) int {
	n := 0
	for _, r := range s.Requests() {
		if r.LastUserMessage() == prompt {
			n++
		}
	}
	return n
}

// Requests returns every chat-completion request received, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	copy(out, s.requests)
	return out
}

// Disconnects returns the number of streams whose client went away before
// the server finished sending.
func (s *Server) Disconnects() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.disconnects
}

// WaitCalls blocks until Calls() >= n. It returns ctx.Err() if ctx ends
// first.
func (s *Server) WaitCalls(ctx context.Context, n int) error {
	return s.wait(ctx, func() bool { return len(s.requests) >= n })
}

// WaitDisconnects blocks until Disconnects() >= n. It returns ctx.Err() if
// ctx ends first.
func (s *Server) WaitDisconnects(ctx context.Context, n int) error {
	return s.wait(ctx, func() bool { return s.disconnects >= n })
}

// wait blocks until cond, evaluated under mu, holds.
func (s *Server) wait(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ok, ch := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// notifyLocked wakes the waiters; mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// record stores a received request and returns it numbered.
func (s *Server) record(body []byte, h http.Header) Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := Request{N: len(s.requests) + 1, Body: body, Header: h.Clone()}
	s.requests = append(s.requests, r)
	s.clock++
	s.spans = append(s.spans, span{start: s.clock})
	s.notifyLocked()
	return r
}

func (s *Server) countDisconnect() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.disconnects++
	s.notifyLocked()
}

// enter registers a handler; false once Close has begun.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.handlers.Add(1)
	return true
}

// errServerClosing ends a stream because Close was called.
var errServerClosing = errors.New("llmtest: server closing")
