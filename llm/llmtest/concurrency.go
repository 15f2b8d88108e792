package llmtest

import "context"

// span is when one chat-completion request was open: from its receipt to
// the handler's return (the answer sent, or the client gone), in the
// server's clock ticks; end is 0 while it is open.
type span struct{ start, end int64 }

// finished closes req's span.
func (s *Server) finished(req Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock++
	s.spans[req.N-1].end = s.clock
	s.notifyLocked()
}

// Active returns how many chat-completion requests that match are open
// now (all of them for a nil match): received, and neither answered in
// full nor left by their client.
func (s *Server) Active(match func(Request) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.activeLocked(match)
}

func (s *Server) activeLocked(match func(Request) bool) int {
	n := 0
	for i, sp := range s.spans {
		if sp.end == 0 && (match == nil || match(s.requests[i])) {
			n++
		}
	}
	return n
}

// MaxConcurrent returns the most chat-completion requests that match
// (all of them for a nil match) that were ever open at once: what a test
// checks a concurrency limit with.
func (s *Server) MaxConcurrent(match func(Request) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Each tick is one start or one end, so walking the ticks in order
	// counts the open requests exactly.
	delta := map[int64]int{}
	for i, sp := range s.spans {
		if match != nil && !match(s.requests[i]) {
			continue
		}
		delta[sp.start]++
		if sp.end != 0 {
			delta[sp.end]--
		}
	}
	open, most := 0, 0
	for tick := int64(1); tick <= s.clock; tick++ {
		open += delta[tick]
		most = max(most, open)
	}
	return most
}

// WaitActive blocks until Active(match) >= n. It returns ctx.Err() if ctx
// ends first.
func (s *Server) WaitActive(ctx context.Context, match func(Request) bool, n int) error {
	return s.wait(ctx, func() bool { return s.activeLocked(match) >= n })
}
