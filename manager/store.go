package manager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// errHandedBack ends a request whose job went back to the queue.
var errHandedBack = errors.New("job handed back")

// errNotOurReply: another delivery of the same job now writes its reply.
var errNotOurReply = errors.New("another delivery of this job writes its reply")

// publish stores a non-terminal event on the reply subject; for a live
// job (live.go) it publishes it live and stores it asynchronously. When it
// cannot be stored the job goes back to the queue (its next delivery
// resumes from what the stream holds); when another delivery of the job
// owns the reply, this one stops without a word.
func (r *request) publish(ev protocol.Event) error {
	if r.live && (r.lastStored != 0 || r.deliveries == 1) {
		return r.verdict(ev.Type, r.publishLive(&ev))
	}
	// A redelivery's first event is stored before anything goes live
	// (resume), so that a reader knows the writer changed.
	return r.verdict(ev.Type, r.store(&ev))
}

// verdict settles the request after a failed store of an event of type
// typ (nil: stored, nothing to do) and returns err.
func (r *request) verdict(typ protocol.EventType, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errNotOurReply):
		r.superseded()
		return err
	case isRefused(err):
		r.refused(typ, err)
		return err
	default:
		r.log.Warn("reply event not stored; job handed back", "type", typ, "err", err)
		r.nak(time.Second)
		return errHandedBack
	}
}

// refusedError is a store error no retry can fix: the event is larger than
// the server accepts, or this worker may not publish to the reply.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return "the server refuses the event: " + e.err.Error() }

func (e *refusedError) Unwrap() error { return e.err }

func isRefused(err error) bool {
	var refused *refusedError
	return errors.As(err, &refused)
}

// refused ends a request whose reply refuses an event for good. Another
// delivery would only call the upstream again and be refused the same
// way, so the job is dead-lettered and terminated, and the producer gets
// an error event if a small one can still be stored.
func (r *request) refused(typ protocol.EventType, err error) {
	r.log.Error("the server refuses a reply event; job dead-lettered", "type", typ, "err", err)
	perr := &protocol.Error{Code: protocol.CodeInternal, Message: fmt.Sprintf("a %s event of the reply could not be stored (%v); the job was dead-lettered", typ, errors.Unwrap(err))}
	r.deadLetter(r.job.Tenant, r.job.ID, perr)
	r.m.countEnding(protocol.EventError, perr.Code, 1)
	if r.live {
		// The events shown live and not stored are not followed: the
		// error follows the last stored event, so the stored reply has no
		// gap (a live reader that saw more takes a stored end below its
		// next seq as the end, publisher.Reply.Next).
		r.copy = nil
		r.takeUnstored()
		r.seq = r.storedSeq
	}
	if serr := r.store(&protocol.Event{Type: protocol.EventError, Error: perr}); serr != nil {
		r.log.Error("error event not stored either", "err", serr)
	}
	r.outcome, r.code = string(protocol.EventError), perr.Code
	r.term("reply event refused by the server")
}

// end stores the terminal event, then acks the job.
func (r *request) end(ev protocol.Event) {
	if ev.Type == protocol.EventDone {
		now := time.Now()
		if ev.Timings == nil {
			ev.Timings = &protocol.Timings{}
		}
		ev.Timings.QueueMS, ev.Timings.TotalMS = ms(r.pulled.Sub(r.arrived)), ms(now.Sub(r.arrived))
		if !r.firstChunk.IsZero() {
			ev.Timings.TTFTMS = ms(r.firstChunk.Sub(r.arrived))
		}
	}
	var code protocol.Code
	if ev.Error != nil {
		code = ev.Error.Code
	}
	if r.live {
		// Everything before the end is stored before it (live.go).
		if r.verdict(r.copyType(), r.confirmStored()) != nil {
			return
		}
	}
	r.m.countEnding(ev.Type, code, 1) // before the producer can hear of it
	switch err := r.store(&ev); {
	case errors.Is(err, errNotOurReply):
		r.m.countEnding(ev.Type, code, -1)
		r.superseded()
		return
	case isRefused(err):
		// For an error event, its message may be what is too large:
		// refused stores a short one.
		r.m.countEnding(ev.Type, code, -1)
		r.refused(ev.Type, err)
		return
	case err != nil:
		// Not stored: hand the job back; its next delivery resumes from
		// whatever the replies stream holds.
		r.m.countEnding(ev.Type, code, -1)
		r.log.Error("terminal event not stored; job handed back", "type", ev.Type, "err", err)
		r.nak(time.Second)
		return
	}
	r.outcome, r.usage, r.code = string(ev.Type), ev.Usage, code
	r.ack()
}

// store numbers ev and stores it on the reply subject with a JetStream
// ack, as the only writer: each event expects the one before it to be the
// subject's last message. So no event is lost (an unconfirmed one is sent
// again) and a reply never has two writers: when a job is redelivered
// while its first delivery still runs (its worker was cut off longer than
// AckWait), the first one's next event finds the other's there, and it
// returns errNotOurReply.
func (r *request) store(ev *protocol.Event) error {
	ev.V, ev.ID, ev.Seq = protocol.Version, r.job.ID, r.seq+1
	b, err := ev.Marshal()
	if err != nil {
		return err
	}
	if r.live {
		// With the events shown live and not stored yet, if any: first on
		// their own when together they would not fit.
		if r.overflows(b) {
			if err := r.storeQueued(); err != nil {
				return err
			}
		}
		r.unstored.add(ev.Type, ev.Seq, b)
		return r.storeQueued()
	}
	return r.storeMsg(ev.Seq, replyMsg(r.subject, r.streamSeq, r.deliveries, ev.Seq, b))
}

// storeMsg stores msg, event number seq, as store describes, retrying.
func (r *request) storeMsg(seq uint64, msg *nats.Msg) error {
	var err error
	for attempt := range 4 {
		if attempt > 0 {
			r.progress()
			if !r.m.pause(time.Duration(attempt) * 100 * time.Millisecond) {
				return err // stopping: the job goes back as it is
			}
		}
		ctx, cancel := context.WithTimeout(r.m.hard, r.m.ackWait()/4)
		ack, perr := r.m.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(r.lastStored))
		cancel()
		switch {
		case r.m.refuses(r.subject, perr):
			return &refusedError{perr}
		case perr == nil:
			r.stored(seq, ack.Sequence)
			return nil
		case isWrongLastSequence(perr):
			// An earlier attempt stored it (its ack was lost), or another
			// delivery writes this reply.
			streamSeq, ours, lerr := r.m.lastStoredIs(r.subject, msg.Data)
			if lerr == nil && ours {
				r.stored(seq, streamSeq)
				return nil
			}
			if lerr == nil {
				return errNotOurReply
			}
			err = lerr
		case errors.Is(perr, nats.ErrConnectionClosed):
			return perr
		default:
			err = perr
		}
	}
	return err
}

// stored records that event number seq is stored at streamSeq.
func (r *request) stored(seq, streamSeq uint64) {
	r.seq, r.storedSeq, r.lastStored = max(r.seq, seq), seq, streamSeq
}

// superseded leaves a reply another delivery of the job now writes: no ack
// (that would remove the job under the other delivery), no nak. But when
// this delivery has written nothing yet, the reply may not be another
// delivery's at all: an earlier job's with the same ID (see duplicateID),
// or this job's, ended by the fleet's maintainer (a queue timeout) as it
// was pulled — then there is no other writer to settle the job, and it is
// terminated, never redelivered.
func (r *request) superseded() {
	if r.lastStored == 0 {
		ctx, cancel := context.WithTimeout(r.m.hard, r.m.ackWait()/4)
		reply, err := r.m.readReply(ctx, r.subject, r.streamSeq, r.arrived)
		cancel()
		switch {
		case err != nil:
		case reply.earlier:
			r.duplicateID(reply)
			return
		case reply.ended:
			r.outcome = "superseded"
			r.log.Info("the reply ended before this delivery wrote to it (a queue timeout, say); job terminated")
			r.term("its reply had already ended")
			return
		}
	}
	r.outcome = "superseded"
	r.log.Warn("another delivery of this job now writes its reply; leaving it")
	r.settled = true
}

// lastStoredIs reports the stream sequence of subject's last message and
// whether it is data.
func (m *Manager) lastStoredIs(subject string, data []byte) (uint64, bool, error) {
	ctx, cancel := context.WithTimeout(m.hard, m.ackWait()/4)
	defer cancel()
	last, err := m.topo.Replies.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return 0, false, err
	}
	return last.Sequence, bytes.Equal(last.Data, data), nil
}

// refuses reports whether err, from a publish to subject, is one that no
// retry can fix: the message exceeds the server's max_payload or the
// stream's message size, or the server denies this connection publishing
// to subject (the server answers a denied publish with an asynchronous
// error, so the publish itself only times out).
func (m *Manager) refuses(subject string, err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		return false
	case errors.Is(err, nats.ErrMaxPayload):
		return true
	case errors.As(err, &apiErr):
		return apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		last := m.nc.LastError()
		return errors.Is(last, nats.ErrPermissionViolation) && strings.Contains(last.Error(), `"`+subject+`"`)
	}
	return false
}

func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// endWithError ends the request with an error event.
func (r *request) endWithError(perr *protocol.Error) {
	r.end(protocol.Event{Type: protocol.EventError, Error: perr})
}
