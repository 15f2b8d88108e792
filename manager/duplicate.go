package manager

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// A producer that submits a new job under an ID used before, once the jobs
// stream's duplicate window has passed, gets a second job whose reply
// subject still holds the first one's events (for the replies stream's
// max age). The two must not mix: the new job ends with a duplicate_id
// error instead (see replyowner.go).

// checkEarlierReply ends the job when its reply subject holds an earlier
// job's reply; true when it did (or handed the job back).
func (r *request) checkEarlierReply() bool {
	ctx, cancel := context.WithTimeout(r.m.hard, r.m.ackWait()/4)
	defer cancel()
	reply, err := r.m.readReply(ctx, r.subject, r.streamSeq, r.arrived)
	if err != nil || !reply.earlier {
		return false
	}
	r.duplicateID(reply)
	return true
}

// duplicateID ends a job whose ID an earlier request's reply holds. While
// that request still writes its reply, this job waits for it to end
// (reporting progress), so that the two never mix and the earlier one is
// never cut off.
func (r *request) duplicateID(reply replyOf) {
	r.log.Warn("duplicate request ID: its reply subject holds an earlier request's reply")
	r.outcome, r.code = string(protocol.EventError), protocol.CodeDuplicateID
	if !reply.ended {
		last, err := r.waitEarlierEnd()
		switch {
		case errors.Is(context.Cause(r.ctx), errShutdown):
			r.outcome, r.code = "", ""
			r.nak(0)
			return
		case err != nil:
			// There is nowhere to tell the producer: the earlier reply is
			// still being written.
			d := r.deadLetterOf(r.job.Tenant, r.job.ID)
			d.err = &protocol.Error{Code: protocol.CodeDuplicateID,
				Message: "request ID " + r.job.ID + " is in use by a request that did not end within this job's processing timeout"}
			r.m.deadLetter(d)
			r.term("duplicate request ID")
			return
		}
		reply.last = last
	}
	ctx, cancel := context.WithTimeout(r.m.hard, r.m.ackWait()/4)
	defer cancel()
	if err := r.m.endDuplicate(ctx, r.deadLetterOf(r.job.Tenant, r.job.ID), reply.last); err != nil {
		r.log.Warn("duplicate_id error not stored", "err", err)
	}
	r.term("duplicate request ID")
}

// waitEarlierEnd waits until the reply on this request's subject ends and
// returns its last event: it watches the live reply subject, so the end is
// seen as it is stored, and reads the stored reply after each event (and
// at least every progress interval, reporting progress to JetStream).
func (r *request) waitEarlierEnd() (*jetstream.RawStreamMsg, error) {
	sub, err := r.m.nc.SubscribeSync(r.m.cfg.Names.Reply(r.job.Tenant, r.job.ID))
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	for {
		ctx, cancel := context.WithTimeout(r.ctx, r.progressEvery())
		last, err := r.m.topo.Replies.GetLastMsgForSubject(ctx, r.subject)
		if err == nil {
			if ev, derr := protocol.DecodeEvent(last.Data); derr == nil && ev.Type.Terminal() {
				cancel()
				return last, nil
			}
			_, err = sub.NextMsgWithContext(ctx)
		}
		cancel()
		if r.ctx.Err() != nil {
			return nil, r.ctx.Err()
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		r.progress()
	}
}
