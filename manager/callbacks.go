package manager

import (
	"sync"

	"github.com/nats-io/nats.go"
)

// callbackGuard lets Stop wait for NATS callbacks that were already
// running when it unsubscribed: a callback that starts after close does
// nothing.
type callbackGuard struct {
	mu      sync.RWMutex
	closed  bool
	running sync.WaitGroup
}

// guard wraps a subscription's handler.
func (g *callbackGuard) guard(handle nats.MsgHandler) nats.MsgHandler {
	return func(msg *nats.Msg) {
		g.mu.RLock()
		if g.closed {
			g.mu.RUnlock()
			return
		}
		g.running.Add(1) // under mu, so close cannot slip between the check and Add
		g.mu.RUnlock()
		defer g.running.Done()
		handle(msg)
	}
}

// close refuses callbacks from now on.
func (g *callbackGuard) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}

// wait waits for the callbacks that started before close.
func (g *callbackGuard) wait() { g.running.Wait() }
