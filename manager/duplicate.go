package manager

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// A request ID names its reply subject. A producer that submits a new job
// under an ID used before, once the jobs stream's duplicate window has
// passed, gets a second job whose reply subject still holds the first
// one's events (for the replies stream's max age). The two must not mix:
// the new job ends with a duplicate_id error instead.

// earlierReply reports whether the reply on subject was begun before this
// job arrived in the queue: it belongs to an earlier job with the same ID.
// (A reply begun after the arrival is this job's: written by an earlier
// delivery, or ended by the fleet's maintainer.) last is the reply's last
// message, nil when the reply is empty.
func (r *request) earlierReply(ctx context.Context) (earlier bool, last *jetstream.RawStreamMsg, err error) {
	first, err := r.m.top.Replies.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(r.subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, err
	}
	if !first.Time.Before(r.arrived) {
		return false, nil, nil
	}
	last, err = r.m.top.Replies.GetLastMsgForSubject(ctx, r.subject)
	return err == nil, last, err
}

// duplicateID ends a job whose ID names an earlier job's reply (last is
// that reply's last message). Once that reply has ended, a duplicate_id
// error follows it — publishers accept it whatever its seq — and the job
// is dead-lettered (a replay gets a new ID) and terminated. While the
// earlier job still writes its reply, this one waits for it to end.
func (r *request) duplicateID(last *jetstream.RawStreamMsg) {
	prev, err := protocol.DecodeEvent(last.Data)
	if err != nil || prev.ID != r.job.ID {
		r.log.Error("the reply subject holds a foreign message; job terminated", "err", err)
		r.term("reply subject holds a foreign message")
		return
	}
	if !prev.Type.Terminal() {
		r.log.Warn("the request ID is in use by a running request; job waits for it to end")
		r.nak(r.m.cfg.AckWait)
		return
	}
	perr := &protocol.Error{Code: protocol.CodeDuplicateID,
		Message: "request ID " + r.job.ID + " was used before and its reply is still kept; submit the job under a new ID"}
	r.log.Warn("duplicate request ID; job terminated")
	r.deadLetter(r.job.Tenant, r.job.ID, perr)
	r.seq, r.lastStored = prev.Seq, last.Sequence
	if err := r.store(&protocol.Event{Type: protocol.EventError, Error: perr}); err != nil {
		r.log.Warn("duplicate_id error not stored", "err", err)
	}
	r.m.stats.errors.Add(1)
	r.outcome, r.code = string(protocol.EventError), perr.Code
	r.term("duplicate request ID")
}

// checkEarlierReply ends the job when its reply belongs to an earlier job
// with the same ID; true when it did.
func (r *request) checkEarlierReply() bool {
	ctx, cancel := context.WithTimeout(context.Background(), r.m.cfg.AckWait/4)
	defer cancel()
	earlier, last, err := r.earlierReply(ctx)
	if err != nil || !earlier {
		return false
	}
	r.duplicateID(last)
	return true
}
