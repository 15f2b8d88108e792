package manager

import (
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// Live events (protocol.HeaderLive). A job whose producer asked for them
// gets each event after the first published on its reply subject at once,
// over core NATS, while the event's stored copy goes to the replies
// stream asynchronously. The copy still expects the previous event as the
// subject's last message, so a second writer is refused exactly as
// before; what changes is when the writer learns of it: at its next event
// (or its end), after its reader may have seen this one. So that a reader
// never splices two writers' output:
//
//   - the first event of a reply is stored before anything goes live, so
//     nothing is shown on a reply that turns out not to be this job's;
//   - at most one event is live but not confirmed stored: before the next
//     goes out, the previous copy's ack is awaited (confirmStored);
//   - every event carries the writer's epoch, the job's delivery number
//     (protocol.HeaderEpoch);
//   - a writer that takes over a reply (resume) continues after the last
//     stored event with a reset, which may take the seq of the one event
//     its predecessor showed but did not store: a reader accepts a reset
//     of another epoch at the seq it last returned, and drops events of a
//     lower epoch than one it accepted;
//   - terminal events are stored first and reach the reader only from the
//     stream, so a reader that saw the end knows it is stored, and the
//     job is acked only after every event of its reply is.

// storedCopy is the stored copy of the last live event, sent but not yet
// confirmed.
type storedCopy struct {
	typ protocol.EventType
	seq uint64 // the event's seq
	msg *nats.Msg
	ack jetstream.PubAckFuture
}

// publishLive numbers ev, publishes it live and sends its stored copy,
// once the previous event's copy is confirmed.
func (r *request) publishLive(ev *protocol.Event) error {
	if err := r.confirmStored(); err != nil {
		return err
	}
	if r.m.js.PublishAsyncPending() >= maxPendingCopies {
		// A burst (a herd of followers): store it first, as for a job
		// without live events, rather than stall in the publisher's queue.
		return r.store(ev)
	}
	ev.V, ev.ID, ev.Seq = protocol.Version, r.job.ID, r.seq+1
	b, err := ev.Marshal()
	if err != nil {
		return err
	}
	msg := r.replyMsg(ev.Seq, b)
	live := &nats.Msg{Subject: r.liveSubject, Data: b, Header: nats.Header{}}
	for _, h := range []string{protocol.HeaderJobSeq, protocol.HeaderEpoch} {
		live.Header[h] = msg.Header[h]
	}
	fut, err := r.m.js.PublishMsgAsync(msg, jetstream.WithExpectLastSequencePerSubject(r.lastStored))
	if err != nil {
		// Not sent: store it the slow way (which retries and reports).
		return r.storeMsg(ev.Seq, r.replyMsg(ev.Seq, b))
	}
	// The copy first: its ack is what the next event waits for. A reader
	// keeps whichever of the two reaches it first.
	_ = r.m.nc.PublishMsg(live) // best effort: the copy follows
	r.seq = ev.Seq
	r.copy = &storedCopy{typ: ev.Type, seq: ev.Seq, msg: msg, ack: fut}
	return nil
}

// confirmStored waits for the last live event's stored copy. When its
// asynchronous publish failed or no answer came in time, the copy is
// stored again the slow way: store's retries, and its verdicts (another
// writer, a refusal).
func (r *request) confirmStored() error {
	if r.copy == nil {
		return nil
	}
	select { // usually the ack is in: no timer needed
	case ack := <-r.copy.ack.Ok():
		return r.settleCopy(ack, nil)
	case err := <-r.copy.ack.Err():
		return r.settleCopy(nil, err)
	default:
	}
	timer := time.NewTimer(r.m.ackWait() / 4)
	defer timer.Stop()
	select {
	case ack := <-r.copy.ack.Ok():
		return r.settleCopy(ack, nil)
	case err := <-r.copy.ack.Err():
		return r.settleCopy(nil, err)
	case <-timer.C:
		return r.settleCopy(nil, errCopyTimeout)
	}
}

// settleCopy records the pending copy's ack, or stores it again after a
// failure.
func (r *request) settleCopy(ack *jetstream.PubAck, failed error) error {
	c := r.copy
	r.copy = nil
	switch {
	case failed == nil:
		r.stored(c.seq, ack.Sequence)
		return nil
	case r.m.refuses(r.subject, failed):
		return &refusedError{failed}
	}
	// A message of its own: the asynchronous publisher may still hold the
	// first one.
	return r.storeMsg(c.seq, r.replyMsg(c.seq, c.msg.Data))
}

// replyMsg is the stored copy of event seq, data, of a live reply.
func (r *request) replyMsg(seq uint64, data []byte) *nats.Msg {
	msg := replyMsg(r.subject, r.streamSeq, seq, data, true)
	msg.Header.Set(protocol.HeaderEpoch, r.epoch)
	return msg
}

// copyType is the type of the event whose copy is pending ("" for none):
// what a failure to store it is reported as.
func (r *request) copyType() protocol.EventType {
	if r.copy == nil {
		return ""
	}
	return r.copy.typ
}

// copyAcked and copyFailed are the channels the pending copy's answer
// arrives on, nil when none is pending: the relay loop settles it as soon
// as it arrives, so a refused copy stops the writer before its next event.
func (r *request) copyAcked() <-chan *jetstream.PubAck {
	if r.copy == nil {
		return nil
	}
	return r.copy.ack.Ok()
}

func (r *request) copyFailed() <-chan error {
	if r.copy == nil {
		return nil
	}
	return r.copy.ack.Err()
}

// maxPendingCopies bounds the stored copies a worker has in flight: the
// JetStream context's asynchronous publisher blocks past its own limit
// (4,000 by default).
const maxPendingCopies = 2048

// errCopyTimeout: the stored copy's ack did not come in time.
var errCopyTimeout = errors.New("stored copy of a live event not confirmed in time")
