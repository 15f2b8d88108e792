package manager

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// resume continues a redelivered job from what its reply subject already
// holds: a finished request is only acked; a partial one continues its
// sequence after a reset, stored only if nothing came after what it read,
// so a seq is never used twice even if the previous delivery's last events
// arrive late. It returns false when the job needs no more work here.
func (r *request) resume() bool {
	if r.checkEarlierReply() {
		return false
	}
	for range 3 {
		ctx, cancel := context.WithTimeout(r.ctx, r.progressEvery())
		last, err := r.m.topo.Replies.GetLastMsgForSubject(ctx, r.subject)
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			if !r.live {
				return true // nothing stored, so nothing shown
			}
			// An earlier delivery may have shown events live that it never
			// stored (live.go): a reset first tells their reader to
			// discard them.
			r.seq, r.storedSeq, r.lastStored = 0, 0, 0
		case err != nil:
			r.log.Warn("cannot read the reply so far; job handed back", "err", err)
			r.nak(time.Second)
			return false
		default:
			ev, err := protocol.DecodeEvent(last.Data)
			if err != nil || ev.ID != r.job.ID {
				r.log.Error("the reply subject holds a foreign message; job terminated", "err", err)
				r.term("reply subject holds a foreign message")
				return false
			}
			if ev.Type.Terminal() {
				r.ack()
				return false
			}
			// A live writer before us may have shown events past this one
			// and never stored them: our reset takes the next seq, and their
			// reader drops what it showed (live.go).
			r.seq, r.storedSeq, r.lastStored = ev.Seq, ev.Seq, last.Sequence
			if r.offersNotIdempotentTool() {
				// Its first delivery may have called the tool: running the
				// generation again could call it twice.
				r.endWithError(&protocol.Error{Code: protocol.CodeToolNotIdempotent,
					Message: "the job was handed over after its answer began, and it offers a fleet tool that is not idempotent"})
				return false
			}
		}
		if done, resumed := r.resumeWith(); done {
			return resumed
		}
	}
	r.log.Warn("the reply keeps changing under a redelivered job; handed back")
	r.nak(time.Second)
	return false
}

// resumeWith stores the reset a resumed reply continues after. done is
// false when something was stored meanwhile (read the reply again);
// resumed is false when the job was handed back.
func (r *request) resumeWith() (done, resumed bool) {
	switch err := r.store(&protocol.Event{Type: protocol.EventReset}); {
	case err == nil:
		return true, true
	case errors.Is(err, errNotOurReply):
		return false, false
	default:
		r.log.Warn("reset not stored; job handed back", "err", err)
		r.nak(time.Second)
		return true, false
	}
}
