package manager

import (
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// relay copies the hub's entries onto the reply subject, renumbered,
// until the end entry. Until the first chunk it also tells the reader what
// the request waits for (progress events): a stage that has held for
// stageSettle goes out — one that output or the next stage follows sooner
// is not worth an event — and the stage is repeated after every
// ProgressInterval without an event, so a reader can tell a request that
// waits from one that is stuck.
func (r *request) relay(sub *subscription, tick *time.Ticker) {
	h := sub.hub
	quiet := time.NewTimer(r.m.cfg.ProgressInterval) // the heartbeat
	defer quiet.Stop()
	settle := time.NewTimer(stageSettle)
	settle.Stop()
	defer settle.Stop()
	stagePending := false
	for {
		entries, wake := h.since(sub.next)
		for _, e := range entries {
			sub.next++
			if e.kind != entryProgress {
				stagePending = false // superseded by output or the end
			}
			switch e.kind {
			case entryProgress:
				if r.firstChunk.IsZero() { // progress tells of the wait for the first output only
					r.stage, r.reason, stagePending = e.stage, e.reason, true
					settle.Reset(stageSettle)
				}
			case entryChunk:
				if r.firstChunk.IsZero() {
					r.firstChunk = time.Now()
					r.observeFirstChunk()
				}
				r.chunks++
				ev := protocol.Event{Type: protocol.EventChunk}
				e.fillChunk(&ev)
				if r.publish(ev) != nil {
					return
				}
			case entryReset:
				if r.chunks > 0 {
					r.chunks = 0
					if r.publish(protocol.Event{Type: protocol.EventReset}) != nil {
						return
					}
				}
			case entryEnd:
				r.end(protocol.Event{Type: e.end.typ, FinishReason: e.end.finishReason, Usage: e.end.usage, Cached: e.end.cached, Error: e.end.err,
					Timings: e.end.timings()})
				return
			}
		}
		select {
		case <-settle.C:
			if stagePending {
				stagePending = false
				if r.publish(protocol.Event{Type: protocol.EventProgress, Stage: r.stage, Reason: r.reason}) != nil {
					return
				}
				quiet.Reset(r.m.cfg.ProgressInterval)
			}
		case <-quiet.C:
			if r.firstChunk.IsZero() {
				if r.heartbeat() != nil {
					return
				}
				quiet.Reset(r.m.cfg.ProgressInterval)
			}
		case <-wake:
		case <-h.done:
			// The end may have been appended just before run returned:
			// read once more before calling the request orphaned.
			if rest, _ := h.since(sub.next); len(rest) == 0 {
				r.orphaned()
				return
			}
		case <-r.ctx.Done():
			r.endByContext()
			return
		case <-tick.C:
			r.progress()
		}
	}
}

// stageSettle is how long a stage must hold before a progress event says
// so: long enough that a leader whose upstream answers at once sends none,
// short enough that a reader hears of a wait within a blink.
const stageSettle = 100 * time.Millisecond

// heartbeat repeats the request's current stage: it is alive and still
// waiting for its first output.
func (r *request) heartbeat() error {
	stage := r.stage
	if stage == "" {
		stage = protocol.StageGenerating // routed, and nothing reported yet: the leader is at work
	}
	return r.publish(protocol.Event{Type: protocol.EventProgress, Stage: stage, Reason: r.reason})
}
