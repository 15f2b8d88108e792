package manager

import (
	"time"

	"github.com/chatfleet/chatfleet/llm"
)

// chunkWindow batches deltas into chunk entries: deltas that arrive together,
// or after a quiet spell of at least window, go out at once (no added
// latency); deltas that follow a chunk closely are merged and go out when
// the window has passed. An entry that reaches the chunk cap goes out at
// once, whatever the window. A negative window turns merging off: one
// chunk per delta (more when a delta exceeds the cap).
type chunkWindow struct {
	window    time.Duration
	b         chunkBuilder
	emit      func(entry)
	emitted   int // chunk entries emitted
	lastFlush time.Time
	timer     *time.Timer
	armed     bool
}

// add takes a delta; settle decides when it goes out.
func (m *chunkWindow) add(d *llm.Delta) error {
	if !d.HasOutput() {
		return nil
	}
	if err := m.b.add(d, m.emitEntry); err != nil {
		return err
	}
	if m.window < 0 {
		m.flush()
	}
	return nil
}

func (m *chunkWindow) emitEntry(e entry) {
	m.emit(e)
	m.emitted++
	m.lastFlush = time.Now()
}

// settle flushes what add took, now or when the window has passed.
func (m *chunkWindow) settle() {
	if !m.b.has {
		return
	}
	since := time.Since(m.lastFlush)
	if since >= m.window {
		m.flush()
		return
	}
	if !m.armed {
		if m.timer == nil {
			m.timer = time.NewTimer(m.window - since)
		} else {
			m.timer.Reset(m.window - since)
		}
		m.armed = true
	}
}

func (m *chunkWindow) flush() {
	if m.armed {
		m.timer.Stop()
		m.armed = false
	}
	if m.b.has {
		m.emitEntry(m.b.take())
	}
}

// timerC is the channel of an armed timer, or nil (never ready).
func (m *chunkWindow) timerC() <-chan time.Time {
	if !m.armed {
		return nil
	}
	return m.timer.C
}

func (m *chunkWindow) stopTimer() {
	if m.timer != nil {
		m.timer.Stop()
	}
}
