package manager

import (
	"fmt"
	"runtime/debug"
)

// panicked records p, a value recover returned in a deferred call: a
// panic is counted and logged as msg with its stack. It reports whether
// there was one, so the caller can end its work with an error:
//
//	defer func() {
//		if m.panicked(recover(), "panic in X; recovered") {
//			// end X with an internal error
//		}
//	}()
func (m *Manager) panicked(p any, msg string, logArgs ...any) bool {
	if p == nil {
		return false
	}
	m.countPanic()
	m.cfg.Logger.Error(msg, append(logArgs, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))...)
	return true
}
