package manager

import (
	"time"

	"github.com/chatfleet/chatfleet/protocol"
)

// relay copies the hub's entries onto the reply subject, renumbered,
// until the end entry, telling the reader meanwhile what the request waits
// for (progressReport).
func (r *request) relay(sub *subscription, tick *time.Ticker) {
	h := sub.hub
	p := newProgressReport(r)
	defer p.stop()
	for {
		entries, wake := h.since(sub.next)
		for _, e := range entries {
			if r.ctx.Err() != nil {
				// Cancelled (or timed out) with a backlog to relay: a
				// relay that keeps up with a fast upstream would otherwise
				// reach the select below only at the end of the answer.
				r.endByContext()
				return
			}
			sub.next++
			if !r.relayEntry(&e, p) {
				return
			}
		}
		select {
		case <-p.settle.C:
			if !p.settled() {
				return
			}
		case <-p.quiet.C:
			if !p.heartbeat() {
				return
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
		case ack := <-r.copyAcked():
			typ := r.copyType() // before settleCopy clears it
			if r.verdict(typ, r.confirmed(ack, nil)) != nil {
				return
			}
		case err := <-r.copyFailed():
			typ := r.copyType()
			if r.verdict(typ, r.confirmed(nil, err)) != nil {
				return
			}
		case <-r.flushTimerC():
			if r.verdict(r.unstored.typ, r.flushTimerFired()) != nil {
				return
			}
		}
	}
}

// relayEntry publishes what e means for this request; false once the
// request has ended (its terminal event, or a failed publish).
func (r *request) relayEntry(e *entry, p *progressReport) bool {
	if e.kind != entryProgress {
		p.dropPending()
	}
	switch e.kind {
	case entryProgress:
		p.stageChanged(e.stage, e.reason)
	case entryChunk:
		if r.firstChunk.IsZero() {
			r.firstChunk = time.Now()
			r.observeFirstChunk()
		}
		r.chunks++
		ev := protocol.Event{Type: protocol.EventChunk}
		e.fillChunk(&ev)
		return r.publish(ev) == nil
	case entryTool:
		r.chunks++
		return r.publish(protocol.Event{Type: protocol.EventTool, Tool: e.tool}) == nil
	case entryReset:
		if r.chunks > 0 {
			r.chunks = 0
			return r.publish(protocol.Event{Type: protocol.EventReset}) == nil
		}
	case entryEnd:
		ev := protocol.Event{Type: e.end.typ, FinishReason: e.end.finishReason, Usage: e.end.usage, Cached: e.end.cached, Error: e.end.err,
			Timings: e.end.timings()}
		r.bill(&ev, e.end)
		r.end(ev)
		return false
	}
	return true
}
