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
func (w *chunkWindow) add(d *llm.Delta) error {
	if !d.HasOutput() {
		return nil
	}
	if err := w.b.add(d, w.emitEntry); err != nil {
		return err
	}
	if w.window < 0 {
		w.flush()
	}
	return nil
}

func (w *chunkWindow) emitEntry(e entry) {
	w.emit(e)
	w.emitted++
	w.lastFlush = time.Now()
}

// settle flushes what add took, now or when the window has passed.
func (w *chunkWindow) settle() {
	if !w.b.has {
		return
	}
	since := time.Since(w.lastFlush)
	if since >= w.window {
		w.flush()
		return
	}
	if !w.armed {
		if w.timer == nil {
			w.timer = time.NewTimer(w.window - since)
		} else {
			w.timer.Reset(w.window - since)
		}
		w.armed = true
	}
}

func (w *chunkWindow) flush() {
	if w.armed {
		w.timer.Stop()
		w.armed = false
	}
	if w.b.has {
		w.emitEntry(w.b.take())
	}
}

// timerC is the channel of an armed timer, or nil (never ready).
func (w *chunkWindow) timerC() <-chan time.Time {
	if !w.armed {
		return nil
	}
	return w.timer.C
}

func (w *chunkWindow) stopTimer() {
	if w.timer != nil {
		w.timer.Stop()
	}
}
