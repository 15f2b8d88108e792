package manager

import (
	"sync"

	"github.com/nats-io/nats.go"
)

// runGuard lets Stop wait for work that was already running when it
// began — NATS callbacks it unsubscribed, jobs being handled — while work
// that starts after close does nothing.
type runGuard struct {
	mu      sync.RWMutex
	closed  bool
	running sync.WaitGroup
}

// enter reports whether work may start; a true must be paired with leave.
func (g *runGuard) enter() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return false
	}
	g.running.Add(1) // under mu, so close cannot slip between the check and Add
	return true
}

func (g *runGuard) leave() { g.running.Done() }

// guard wraps a subscription's handler.
func (g *runGuard) guard(handle nats.MsgHandler) nats.MsgHandler {
	return func(msg *nats.Msg) {
		if !g.enter() {
			return
		}
		defer g.leave()
		handle(msg)
	}
}

// close refuses work from now on.
func (g *runGuard) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}

// wait waits for the work that started before close.
func (g *runGuard) wait() { g.running.Wait() }
