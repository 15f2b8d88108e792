package manager

import (
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// Live events (protocol.HeaderLive). A job whose producer asked for them
// gets each event after the first published on its reply subject at once,
// over core NATS, and stored in batches: the events shown within
// StoreBatchDelay go to the replies stream together, as one message
// (protocol.StoredBatch), asynchronously. Each batch still expects the
// previous one as the subject's last message, so a second writer is
// refused as before; what changes is when the writer learns of it: at its
// next batch (or its end), after its reader may have seen the events of
// this one. So that a reader never splices two writers' output:
//
//   - a redelivery stores its first event (a reset, resume) before
//     anything goes live; a first delivery shows its first event as it
//     sends it to be stored, and a reply that turns out not to be this
//     job's is told apart by its reader: an earlier job's by the job's
//     sequence (protocol.HeaderJobSeq), an end stored first (a queue
//     timeout) as a stored end below the seq it expects next;
//   - at most one batch is in flight: the next waits for its ack, and
//     collects the events shown meanwhile;
//   - every event carries the writer's epoch, the job's delivery number
//     (protocol.HeaderEpoch);
//   - a writer that takes over a reply (resume) continues after the last
//     stored event with a reset, whose seq may be one its predecessor
//     showed but never stored: a reader accepts a reset of a higher epoch
//     at or below the seq it expects next, and drops events of a lower
//     epoch than one it accepted;
//   - terminal events are stored first (with the events not stored yet)
//     and reach the reader only from the stream, so a reader that saw the
//     end knows it is stored, and the job is acked only after every event
//     of its reply is.

// unstoredEvents are the events shown live and not yet sent to be stored.
type unstoredEvents struct {
	events [][]byte // their JSON, in order
	first  uint64   // the seq of the first
	typ    protocol.EventType
	bytes  int
	since  time.Time // when the first went out
}

func (u *unstoredEvents) add(typ protocol.EventType, seq uint64, b []byte) {
	if len(u.events) == 0 {
		u.first, u.since = seq, time.Now()
	}
	u.events, u.typ, u.bytes = append(u.events, b), typ, u.bytes+len(b)
}

func (u *unstoredEvents) last() uint64 { return u.first + uint64(len(u.events)) - 1 }

// maxBatchBytes bounds a stored batch (a single event may be larger): far
// below the server's message size, and what a takeover may have to
// discard.
const maxBatchBytes = 32 << 10

// batchLimit is the size of the events a stored batch holds at most, for
// the server this worker is connected to now: room is left for headers.
func (m *Manager) batchLimit() int {
	const headroom = 4 << 10
	return int(max(min(maxBatchBytes, m.nc.MaxPayload()-headroom), 1))
}

// storedCopy is a batch sent to be stored and not yet confirmed.
type storedCopy struct {
	typ protocol.EventType // of its last event
	seq uint64             // its last event's seq
	msg *nats.Msg
	ack jetstream.PubAckFuture
}

// publishLive numbers ev, publishes it live and queues it to be stored;
// the queue is sent now when it is due (see flushDue) and no batch is in
// flight, and otherwise when the flush timer fires or the batch in flight
// is confirmed (relay).
func (r *request) publishLive(ev *protocol.Event) error {
	if err := r.settleIfAnswered(); err != nil {
		return err
	}
	ev.V, ev.ID, ev.Seq = protocol.Version, r.job.ID, r.seq+1
	b, err := ev.Marshal()
	if err != nil {
		return err
	}
	if r.overflows(b) {
		// A batch stays below the limit: send what is queued first.
		if err := r.confirmStored(); err != nil {
			return err
		}
		if err := r.flush(false); err != nil {
			return err
		}
	}
	// Best effort: the stored copy follows. The header is the request's
	// own, read and never kept by PublishMsg.
	_ = r.m.nc.PublishMsg(&nats.Msg{Subject: r.liveSubject, Data: b, Header: r.liveHeader})
	r.seq = ev.Seq
	r.unstored.add(ev.Type, ev.Seq, b)
	// Events other than output are rare and say what the request waits
	// for or that its output starts over: stored at once, so a reader of
	// the stream knows it too. The first one so, too, claims the reply
	// within a round trip, as storing it first did (an ID reused while
	// its earlier job starts must lose that race at once).
	urgent := ev.Type != protocol.EventChunk && ev.Type != protocol.EventTool
	if r.copy == nil && (urgent || r.flushDue()) {
		return r.flush(!urgent)
	}
	r.armFlush()
	return nil
}

// overflows reports whether event b would take the queued events past a
// batch's size: they are sent on their own first.
func (r *request) overflows(b []byte) bool {
	return len(r.unstored.events) > 0 && r.unstored.bytes+len(b) > r.m.batchLimit()
}

// flushDue reports whether the queued events should be sent: the oldest
// waited StoreBatchDelay, or they fill a batch.
func (r *request) flushDue() bool {
	u := &r.unstored
	return len(u.events) > 0 && (u.bytes >= r.m.batchLimit() || time.Since(u.since) >= r.m.cfg.StoreBatchDelay)
}

// armFlush starts the flush timer for the queued events, unless it runs.
func (r *request) armFlush() {
	if r.flushArmed || len(r.unstored.events) == 0 {
		return
	}
	wait := r.m.cfg.StoreBatchDelay - time.Since(r.unstored.since)
	if r.flushTimer == nil {
		r.flushTimer = time.NewTimer(wait)
	} else {
		r.flushTimer.Reset(wait)
	}
	r.flushArmed = true
}

// stopFlushTimer stops the flush timer. A tick it may still deliver
// (timers before Go 1.23) is never read: flushTimerC is nil until the
// timer is armed again, and a flush with nothing queued does nothing.
func (r *request) stopFlushTimer() {
	if r.flushArmed {
		r.flushTimer.Stop()
	}
	r.flushArmed = false
}

// flushTimerC is the flush timer's channel, nil when it is not running.
func (r *request) flushTimerC() <-chan time.Time {
	if !r.flushArmed {
		return nil
	}
	return r.flushTimer.C
}

// flushTimerFired sends the queued events when the timer fires, unless a
// batch is in flight (its confirmation sends them).
func (r *request) flushTimerFired() error {
	r.flushArmed = false
	if r.copy != nil {
		return nil
	}
	return r.flush(true)
}

// flush sends the queued events to be stored as one batch, expecting the
// last stored message; at most one batch is in flight. When this worker
// has many batches in flight, a deferrable flush waits another delay.
func (r *request) flush(deferrable bool) error {
	u := r.unstored
	if len(u.events) == 0 {
		return nil
	}
	burst := r.m.js.PublishAsyncPending() >= maxPendingCopies
	if deferrable && burst && u.bytes < r.m.batchLimit() {
		// A burst (a herd of followers): this worker has many batches in
		// flight already. Keep collecting for another delay instead: fewer,
		// larger batches, and no relay waiting on a store.
		r.unstored.since = time.Now()
		r.stopFlushTimer()
		r.armFlush()
		return nil
	}
	if burst {
		// A full batch in a burst: store it the slow way rather than stall
		// in the asynchronous publisher's queue.
		return r.storeQueued()
	}
	last, msg, err := r.takeBatch()
	if err != nil {
		return err
	}
	fut, err := r.m.js.PublishMsgAsync(msg, jetstream.WithExpectLastSequencePerSubject(r.lastStored))
	if err != nil {
		return r.storeMsg(last, copyMsg(msg))
	}
	r.copy = &storedCopy{typ: u.typ, seq: last, msg: msg, ack: fut}
	return nil
}

// takeBatch takes the queued events as one stored message, and the seq of
// its last event.
func (r *request) takeBatch() (uint64, *nats.Msg, error) {
	u := r.takeUnstored()
	data, err := protocol.StoredBatch(u.events)
	if err != nil {
		return 0, nil, err
	}
	return u.last(), r.batchMsg(u.first, u.last(), data), nil
}

// storeQueued stores the queued events now, as one message, the slow way
// (store's retries and verdicts).
func (r *request) storeQueued() error {
	last, msg, err := r.takeBatch()
	if err != nil {
		return err
	}
	return r.storeMsg(last, msg)
}

// copyMsg is a message of its own with m's subject, data and headers: one
// the asynchronous publisher may still hold is not sent twice.
func copyMsg(m *nats.Msg) *nats.Msg {
	again := nats.NewMsg(m.Subject)
	again.Data = m.Data
	for k, v := range m.Header {
		again.Header[k] = v
	}
	return again
}

// batchMsg is the stored message of events first..last of a live reply.
func (r *request) batchMsg(first, last uint64, data []byte) *nats.Msg {
	msg := r.replyMsg(last, data)
	if first != last {
		msg.Header.Set(protocol.HeaderBatch, strconv.FormatUint(first, 10))
	}
	return msg
}

// settleIfAnswered settles the batch in flight if its answer is in,
// without waiting.
func (r *request) settleIfAnswered() error {
	if r.copy == nil {
		return nil
	}
	select {
	case ack := <-r.copy.ack.Ok():
		return r.settleCopy(ack, nil)
	case err := <-r.copy.ack.Err():
		return r.settleCopy(nil, err)
	default:
		return nil
	}
}

// confirmStored waits for the batch in flight. When its asynchronous
// publish failed or no answer came in time, it is stored again the slow
// way: store's retries, and its verdicts (another writer, a refusal).
func (r *request) confirmStored() error {
	if r.copy == nil {
		return nil
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

// settleCopy records the batch's ack, or stores it again after a failure.
func (r *request) settleCopy(ack *jetstream.PubAck, failed error) error {
	c := r.copy
	r.copy = nil
	switch {
	case failed == nil:
		r.stored(c.seq, ack.Sequence)
	case r.m.refuses(r.subject, failed):
		return &refusedError{failed}
	default:
		return r.storeMsg(c.seq, copyMsg(c.msg))
	}
	return nil
}

// confirmed settles the batch in flight with its answer, then sends the
// queued events if they are due.
func (r *request) confirmed(ack *jetstream.PubAck, failed error) error {
	if err := r.settleCopy(ack, failed); err != nil {
		return err
	}
	if r.flushDue() {
		return r.flush(true)
	}
	r.armFlush()
	return nil
}

// takeUnstored returns the queued events and forgets them.
func (r *request) takeUnstored() unstoredEvents {
	u := r.unstored
	r.unstored = unstoredEvents{}
	r.stopFlushTimer()
	return u
}

// replyMsg is the stored copy of event seq, data, of a live reply.
func (r *request) replyMsg(seq uint64, data []byte) *nats.Msg {
	msg := replyMsg(r.subject, r.streamSeq, r.deliveries, seq, data)
	msg.Header.Set(protocol.HeaderEpoch, r.epoch)
	return msg
}

// copyType is the type of the last event of the batch in flight ("" for
// none): what a failure to store it is reported as.
func (r *request) copyType() protocol.EventType {
	if r.copy == nil {
		return ""
	}
	return r.copy.typ
}

// copyAcked and copyFailed are the channels the answer of the batch in
// flight arrives on, nil when none is: the relay loop settles it as soon
// as it arrives, so a refused batch stops the writer before its next.
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

// maxPendingCopies bounds the stored batches a worker has in flight: the
// JetStream context's asynchronous publisher blocks past its own limit
// (4,000 by default).
const maxPendingCopies = 2048

// errCopyTimeout: the batch's ack did not come in time.
var errCopyTimeout = errors.New("stored batch of a live reply not confirmed in time")
