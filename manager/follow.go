package manager

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/internal/natstrace"
	"github.com/chatfleet/chatfleet/protocol"
)

// follow answers from another worker's generation: join its leader (which
// then mirrors the generation to its subject), read that subject from the
// first event, and watch the lease. When the lease vanishes without an end
// stored, the leader died: route again, which takes over by creating the
// lease. When the lease names another generation, follow that one.
func (h *hub) follow(holder leaseValue) routeResult {
	ctx := h.ctx
	f := &remoteFollow{hub: h, lease: holder}
	defer f.stop()
	if err := f.join(ctx); errors.Is(err, errGenGone) {
		return routeAfterBackoff // it just ended (the cache follows) or is not registered yet
	}
	// Any other join failure: the leader may be dead. Watch its lease.
	tick := time.NewTicker(h.m.leaseTTL() / 3)
	defer tick.Stop()
	endStoredTicks := 0
	for {
		select {
		case <-h.endCh:
			return routeEnded
		case <-f.gap:
			return routeAfterBackoff // an event of the generation is missing: read it again
		case <-ctx.Done():
			return routeAgain // run ends it by its context
		case <-tick.C:
		}
		if h.isEnded() {
			return routeEnded
		}
		cur, err := readLease(ctx, h.m.topo.Inflight, h.dedupeKey)
		switch {
		case err == nil && cur.Gen == holder.Gen:
			if !f.joined {
				if err := f.join(ctx); errors.Is(err, errGenGone) {
					return routeAfterBackoff
				}
			}
		case err == nil || errors.Is(err, jetstream.ErrKeyNotFound):
			// The leader released the key or lost it. If it stored the end,
			// that end is on its way to us; wait a few ticks for it.
			if f.joined && h.m.genEndStored(ctx, holder) && endStoredTicks < 3 {
				endStoredTicks++
				continue
			}
			return routeAgain // a new leader, or none: route again (take over)
		}
		// Other errors are transient: look again at the next tick.
	}
}

// remoteFollow is one attempt to follow a remote generation.
type remoteFollow struct {
	hub         *hub
	lease       leaseValue
	joined      bool
	stopReading func()
	gap         chan struct{} // closed when an event is missing
}

// join registers with the leader and starts reading the generation.
func (f *remoteFollow) join(ctx context.Context) error {
	h := f.hub
	if err := h.m.join(ctx, f.lease, h.id); err != nil {
		if !errors.Is(err, errGenGone) {
			h.m.leave(f.lease, h.id) // the join may have registered after all
		}
		return err
	}
	f.joined = true
	gen, ok := h.newGeneration(modeFollower, f.lease.Gen, natstrace.SpanContext(f.lease.Trace))
	if !ok {
		return nil // ended meanwhile; follow sees endCh
	}
	h.m.hubs.recheck(h)
	gap := make(chan struct{})
	var once sync.Once
	stop, err := h.readGeneration(ctx, f.lease, gen, func() { once.Do(func() { close(gap) }) })
	if err != nil {
		close(gap)
	}
	f.gap, f.stopReading = gap, stop
	return nil
}

// stop stops reading and leaves the leader, unless the generation ended
// (then the leader is done with us anyway).
func (f *remoteFollow) stop() {
	if f.stopReading != nil {
		f.stopReading()
	}
	if f.joined && !f.hub.isEnded() {
		f.hub.m.leave(f.lease, f.hub.id)
	}
}

// readGeneration reads h's generation subject from its first event into
// the log as generation gen. A missing event calls gap. The returned func stops
// reading and waits until the consumer has stopped.
func (h *hub) readGeneration(ctx context.Context, holder leaseValue, gen int, gap func()) (func(), error) {
	cons, err := h.m.js.OrderedConsumer(ctx, h.m.cfg.Names.RepliesStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{h.m.cfg.Names.Gen(holder.Tenant, holder.Gen)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, err
	}
	var want uint64 = 1 // the consumer's callbacks run one at a time
	// A 1s heartbeat: a consumer lost with its node is noticed (and
	// recreated by the ordered consumer) in about 2s, not 10.
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		ev, err := protocol.DecodeEvent(msg.Data())
		if err != nil || ev.ID != holder.Gen {
			return
		}
		if ev.Seq != want {
			gap()
			return
		}
		want++
		switch ev.Type {
		case protocol.EventTool:
			if ev.Tool != nil {
				h.appendEntry(gen, entryFromEvent(&ev))
			}
		case protocol.EventChunk, protocol.EventReset, protocol.EventProgress, protocol.EventDone, protocol.EventError, protocol.EventCancelled:
			h.appendEntry(gen, entryFromEvent(&ev))
		}
	}, jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return nil, err
	}
	return func() {
		cc.Stop()
		<-cc.Closed()
	}, nil
}

// genEndStored reports whether the replies stream holds the end of h's
// generation.
func (m *Manager) genEndStored(ctx context.Context, holder leaseValue) bool {
	last, err := m.topo.Replies.GetLastMsgForSubject(ctx, m.cfg.Names.Gen(holder.Tenant, holder.Gen))
	if err != nil {
		return false
	}
	ev, err := protocol.DecodeEvent(last.Data)
	return err == nil && ev.Type.Terminal()
}
