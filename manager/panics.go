package manager

import (
	"context"
	"fmt"
	"runtime/debug"
)

// recoverPanic, deferred by a goroutine's first function, recovers a panic:
// it counts it, logs msg with the stack, and hands the value to onPanic
// (which may be nil) so the goroutine can end its work with an error.
func (m *Manager) recoverPanic(msg string, onPanic func(p any), logArgs ...any) {
	p := recover()
	if p == nil {
		return
	}
	m.stats.panics.Add(1)
	m.metrics.panics.Add(context.Background(), 1)
	m.cfg.Logger.Error(msg, append(logArgs, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))...)
	if onPanic != nil {
		onPanic(p)
	}
}
