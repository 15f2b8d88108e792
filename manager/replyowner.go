package manager

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// A request ID names its reply subject, and a job may reuse the ID of an
// earlier one once the jobs stream's duplicate window has passed. Every
// event stored on a reply carries the sequence of the job it answers
// (protocol.HeaderJobSeq), so whose events a reply holds is a fact, not a
// guess.

// replyMsg is event number seq of a reply, answering the job at jobSeq.
// A delivery (above 0) adds a message ID that makes JetStream drop a
// second copy of it (a retried store whose ack was lost):
// <subject>:<jobSeq>.<delivery>:<seq>. The ID names the writer, so no other
// writer's event is ever dropped as this one's copy: with replicas the
// server checks IDs before the expected last sequence, and a takeover's
// event with the fenced writer's ID would be acked as stored without
// being stored, the fence passed.
func replyMsg(subject string, jobSeq, delivery, seq uint64, data []byte) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Data = data
	msg.Header.Set(protocol.HeaderJobSeq, strconv.FormatUint(jobSeq, 10))
	if delivery > 0 {
		msg.Header.Set(jetstream.MsgIDHeader, subject+":"+strconv.FormatUint(jobSeq, 10)+"."+strconv.FormatUint(delivery, 10)+":"+strconv.FormatUint(seq, 10))
	}
	return msg
}

// answers reports whether a stored reply event answers the job at jobSeq
// that arrived at arrived. An event without the header (stored by an older
// worker) is judged by time: one stored before the job arrived is an
// earlier job's.
func answers(msg *jetstream.RawStreamMsg, jobSeq uint64, arrived time.Time) bool {
	if h := msg.Header.Get(protocol.HeaderJobSeq); h != "" {
		return h == strconv.FormatUint(jobSeq, 10)
	}
	return !msg.Time.Before(arrived)
}

// replyOf is what a reply subject holds, as far as one job is concerned.
type replyOf struct {
	last    *jetstream.RawStreamMsg // the last event; nil for an empty reply
	ended   bool                    // the last event is terminal
	earlier bool                    // the reply was begun by an earlier job with the same ID
}

// readReply reads the reply on subject for the job at jobSeq that arrived
// at arrived.
func (m *Manager) readReply(ctx context.Context, subject string, jobSeq uint64, arrived time.Time) (replyOf, error) {
	first, err := m.topo.Replies.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return replyOf{}, nil
	}
	if err != nil {
		return replyOf{}, err
	}
	last, err := m.topo.Replies.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return replyOf{}, err
	}
	ev, err := protocol.DecodeEvent(last.Data)
	return replyOf{last: last, ended: err == nil && ev.Type.Terminal(), earlier: !answers(first, jobSeq, arrived)}, nil
}

// endDuplicate ends the job at jobSeq, whose ID an earlier, ended reply
// holds (last is that reply's last event): it dead-letters the job (a
// replay gets a new ID) and stores a duplicate_id error after the earlier
// reply's events, for the job's producer (publishers accept it whatever
// its seq). The dead letter comes first, as for every error a producer
// may act on.
func (m *Manager) endDuplicate(ctx context.Context, d deadLetter, last *jetstream.RawStreamMsg) error {
	d.err = &protocol.Error{Code: protocol.CodeDuplicateID,
		Message: "request ID " + d.id + " was used before and its reply is still kept; submit the job under a new ID"}
	m.deadLetter(d)
	prev, err := protocol.DecodeEvent(last.Data)
	if err != nil {
		return err
	}
	ev := protocol.Event{V: protocol.Version, ID: d.id, Seq: prev.Seq + 1, Type: protocol.EventError, Error: d.err}
	b, err := ev.Marshal()
	if err != nil {
		return err
	}
	m.countEnding(protocol.EventError, d.err.Code, 1) // before the producer can hear of it
	_, err = m.js.PublishMsg(ctx, replyMsg(last.Subject, d.streamSeq, 0, ev.Seq, b), jetstream.WithExpectLastSequencePerSubject(last.Sequence))
	if err != nil {
		m.countEnding(protocol.EventError, d.err.Code, -1)
	}
	return err
}
