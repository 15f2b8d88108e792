package publisher

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
	"github.com/chatfleet/chatfleet/subjects"
)

// Reply is the event stream of one request. Read it with Next or Events
// from one goroutine at a time; Stop releases it.
type Reply struct {
	p             *Publisher
	tenant        string
	id            string
	subject       string // the reply subject, where stored events are republished live
	storedSubject string // where they are stored: the replies stream's subject

	live       *nats.Subscription        // fast path: core subscription to the reply subject
	liveCh     chan *nats.Msg            // its messages
	stored     jetstream.MessagesContext // slow path: the replies stream from the first event
	fromStream bool                      // switch to the stream before the next read
	next       uint64                    // the seq expected next
	epoch      uint64                    // the epoch of the writer whose events we follow (protocol.HeaderEpoch; 0 without)
	followed   []uint64                  // every epoch followed so far: their resets, read again, are no takeover
	jobSeq     string                    // the job's sequence in the jobs stream, when known (protocol.HeaderJobSeq)
	probe      time.Duration             // current quiet spell before checking the stream
	timer      *time.Timer               // times the quiet spell; reused
	suspect    bool                      // the last check found events stored but not seen live
	ended      bool
	duplicate  bool        // Submit's job was stored before (Duplicate)
	raw        []byte      // the JSON of the event Next returned last
	queued     []readEvent // the rest of a stored batch read last
}

// readEvent is an event as read: decoded, its JSON, its writer's epoch,
// and whether it came from the stream (stored) or live.
type readEvent struct {
	ev     protocol.Event
	raw    []byte
	epoch  uint64
	stored bool
}

// liveBuffer is how many events a reply holds before a reader that does
// not keep up loses live ones; it then reads them from the stream. Small,
// because a producer may have thousands of replies open.
const liveBuffer = 512

// newReply returns a Reply of the request that expects its first event.
func (p *Publisher) newReply(tenant, id string) *Reply {
	return &Reply{p: p, tenant: tenant, id: id, subject: p.names.Reply(tenant, id), storedSubject: p.names.ReplyWrite(tenant, id),
		next: 1, probe: p.opts.idleProbe}
}

// subscribe returns a Reply on the live reply subject.
func (p *Publisher) subscribe(tenant, id string) (*Reply, error) {
	r := p.newReply(tenant, id)
	r.liveCh = make(chan *nats.Msg, liveBuffer)
	sub, err := p.nc.ChanSubscribe(r.subject, r.liveCh)
	if err != nil {
		return nil, err
	}
	r.live = sub
	return r, nil
}

// Attach reads the reply of an existing request from its first event, from
// the replies stream: after a reconnect, a restart, or from another
// process. Replies are kept for the replies stream's max age (15m by
// default).
func (p *Publisher) Attach(ctx context.Context, tenant, id string) (*Reply, error) {
	if err := subjects.ValidName("tenant", tenant); err != nil {
		return nil, err
	}
	if err := subjects.ValidName("id", id); err != nil {
		return nil, err
	}
	r := p.newReply(tenant, id)
	r.fromStream = true
	if err := r.openStream(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// ID returns the request ID.
func (r *Reply) ID() string { return r.id }

// Tenant returns the request's tenant.
func (r *Reply) Tenant() string { return r.tenant }

// Subject returns the reply subject, where the reply's events arrive live.
func (r *Reply) Subject() string { return r.subject }

// Duplicate reports whether Submit found the job stored already: the jobs
// stream took its ID within the duplicate window, so this submit was
// dropped and the reply is that of the job submitted first, which may be
// running (or queued) with nothing stored yet.
func (r *Reply) Duplicate() bool { return r.duplicate }

// Next returns the next event. After the terminal event (done, error or
// cancelled) it returns ErrReplyEnded. When ctx has no deadline, a wait
// longer than the publisher's wait timeout returns ErrTimeout.
func (r *Reply) Next(ctx context.Context) (protocol.Event, error) {
	if r.ended {
		return protocol.Event{}, ErrReplyEnded
	}
	ctx, cancel := r.waitContext(ctx)
	defer cancel()
	for {
		e, err := r.read(ctx)
		if err != nil {
			return protocol.Event{}, r.waitError(ctx, err)
		}
		ev := e.ev
		switch {
		case !e.stored && e.epoch != r.epoch && r.next > 1:
			// Live from a writer other than the one we follow: a fenced
			// writer's, arriving late, or a new writer's ahead of its
			// first stored event, which comes from the stream. (A first
			// delivery shows its first event before storing it.)
			continue
		case e.stored && !slices.Contains(r.followed, e.epoch) && ev.Seq <= r.next && ev.Type == protocol.EventReset:
			// A writer that took over the reply: the event this reset's
			// seq follows is the last one stored, and those we returned
			// from its seq on were its predecessor's, shown live, never
			// stored. The reset discards them. (A reset of a writer we
			// followed, read again from the stream, is one we returned.)
			r.next = ev.Seq
		case e.stored && e.epoch != r.epoch && r.next > 1 && r.stored == nil:
			// Another writer's stored event, and we did not see it take
			// over (its reset may have gone by while we reconnected): the
			// stream has the reply in order, the takeover included.
			r.fromStream = true
			continue
		case e.stored && ev.Seq < r.next && ev.Type.Terminal():
			// Another writer ended the reply (the fleet's maintainer, say,
			// ending a job queued past its timeout) before the first
			// delivery stored what it showed live: its end is the reply's.
			r.next = ev.Seq
		case ev.Seq != r.next && isDuplicateID(&ev):
			// This job reused the ID of an earlier request whose events
			// come first on the subject: its end follows them (after what
			// its worker may have shown live before it found out).
			r.next = ev.Seq
		case ev.Seq < r.next:
			continue // already delivered (seen live, now again in the stream)
		case ev.Seq > r.next && r.stored == nil:
			r.fromStream = true // missed something live: the stream has it
			continue
		case ev.Seq > r.next:
			r.Stop()
			return protocol.Event{}, fmt.Errorf("%w: want seq %d, stream has %d next", ErrEventsLost, r.next, ev.Seq)
		}
		r.next++
		if r.epoch = e.epoch; !slices.Contains(r.followed, e.epoch) {
			r.followed = append(r.followed, e.epoch)
		}
		if ev.Type.Terminal() {
			r.Stop()
		}
		r.raw = e.raw
		return ev, nil
	}
}

// isDuplicateID reports the error a worker ends a job with when its ID was
// used before (protocol.CodeDuplicateID).
func isDuplicateID(ev *protocol.Event) bool {
	return ev.Type == protocol.EventError && ev.Error != nil && ev.Error.Code == protocol.CodeDuplicateID
}

// Epoch returns the writer epoch of the event Next returned last
// (protocol.HeaderEpoch: the delivery of the job that wrote it; 0 for a
// writer without epochs, an older worker's).
func (r *Reply) Epoch() uint64 { return r.epoch }

// Raw returns the JSON of the event Next returned last, exactly as the
// worker published it (from a stored batch too: protocol.DecodeStored).
func (r *Reply) Raw() []byte { return r.raw }

// Events iterates over the events up to and including the terminal one.
// An error ends the iteration; so does breaking out of the loop, which
// stops the reply.
func (r *Reply) Events(ctx context.Context) iter.Seq2[protocol.Event, error] {
	return func(yield func(protocol.Event, error) bool) {
		for {
			ev, err := r.Next(ctx)
			if err != nil {
				if !errors.Is(err, ErrReplyEnded) {
					yield(ev, err)
				}
				return
			}
			if !yield(ev, nil) {
				r.Stop()
				return
			}
			if ev.Type.Terminal() {
				return
			}
		}
	}
}

// Stop releases the reply's subscription or consumer. Safe to call twice.
func (r *Reply) Stop() {
	r.ended = true
	if r.live != nil {
		_ = r.live.Unsubscribe()
		r.live = nil
	}
	if r.timer != nil {
		r.timer.Stop()
	}
	if r.stored != nil {
		r.stored.Stop()
		r.stored = nil
	}
}

// read returns the next event of this request, from the live
// subscription or the stream.
func (r *Reply) read(ctx context.Context) (readEvent, error) {
	for {
		if r.fromStream && r.stored == nil {
			r.queued = nil // the stream has them too, in order
			if err := r.openStream(ctx); err != nil {
				return readEvent{}, err
			}
		}
		if len(r.queued) > 0 {
			e := r.queued[0]
			r.queued = r.queued[1:]
			return e, nil
		}
		var data []byte
		var header nats.Header
		if r.stored != nil {
			msg, err := r.stored.Next(jetstream.NextContext(ctx))
			if err != nil {
				return readEvent{}, err
			}
			data, header = msg.Data(), msg.Headers()
		} else {
			msg, err := r.readLive(ctx)
			if err != nil {
				return readEvent{}, err
			}
			if msg == nil {
				continue // switched to the stream
			}
			if r.seen(msg.Header) {
				continue // the stored copy of an event that came live
			}
			data, header = msg.Data, msg.Header
		}
		if js := header.Get(protocol.HeaderJobSeq); js != "" && r.jobSeq != "" && js != r.jobSeq {
			continue // an earlier job's, which used the same ID
		}
		events, raws, err := protocol.DecodeStored(data)
		if err != nil {
			continue // nothing a worker sent
		}
		epoch, _ := strconv.ParseUint(header.Get(protocol.HeaderEpoch), 10, 64)
		stored := r.stored != nil || header.Get(jetstream.SequenceHeader) != ""
		for i, ev := range events {
			if ev.ID != r.id || ev.Seq == 0 {
				continue // not an event of this request
			}
			e := readEvent{ev: ev, raw: raws[i], epoch: epoch, stored: stored}
			if len(events) == 1 {
				return e, nil // every live event: nothing to queue
			}
			r.queued = append(r.queued, e)
		}
		// A batch: the loop's top returns its first event.
	}
}

// seen reports, without decoding it, that a message is the stream's
// republished copy of an event already returned: its message ID (set by
// the worker, "<subject>:<job seq>.<delivery>:<seq>" — "<subject>:<seq>" from
// older workers — the last seq of a stored batch) names a
// seq below the next, and its writer is the one we follow. With live
// events every event arrives twice; this keeps the second copy cheap.
func (r *Reply) seen(h nats.Header) bool {
	id := h.Get(jetstream.MsgIDHeader)
	i := strings.LastIndexByte(id, ':')
	if i < 0 || h.Get(jetstream.SequenceHeader) == "" {
		return false
	}
	seq, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil || seq >= r.next {
		return false
	}
	// Another writer's may be a takeover's reset.
	epoch, _ := strconv.ParseUint(h.Get(protocol.HeaderEpoch), 10, 64)
	return epoch == r.epoch
}

// waitContext applies the wait timeout to a context without a deadline.
func (r *Reply) waitContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, r.p.opts.waitTimeout, errWaitTimeout)
}

var errWaitTimeout = errors.New("no event within the wait timeout")

// waitError maps the wait timeout onto ErrTimeout.
func (r *Reply) waitError(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), errWaitTimeout) {
		return fmt.Errorf("%w: no event for request %s/%s within %s", ErrTimeout, r.tenant, r.id, r.p.opts.waitTimeout)
	}
	return err
}
