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
func (g *generation) follow(h leaseValue) next {
	ctx := g.ctx
	f := &following{g: g, h: h}
	defer f.stop()
	if err := f.join(ctx); errors.Is(err, errGenGone) {
		return againLater // it just ended (the cache follows) or is not registered yet
	}
	// Any other join failure: the leader may be dead. Watch its lease.
	tick := time.NewTicker(g.m.cfg.LeaseTTL / 3)
	defer tick.Stop()
	endStoredTicks := 0
	for {
		select {
		case <-g.endCh:
			return ended
		case <-f.gap:
			return againLater // an event of the generation is missing: read it again
		case <-ctx.Done():
			return again // run ends it by its context
		case <-tick.C:
		}
		if g.isEnded() {
			return ended
		}
		cur, err := readLease(ctx, g.m.top.Inflight, g.key)
		switch {
		case err == nil && cur.Gen == h.Gen:
			if !f.joined {
				if err := f.join(ctx); errors.Is(err, errGenGone) {
					return againLater
				}
			}
		case err == nil || errors.Is(err, jetstream.ErrKeyNotFound):
			// The leader released the key or lost it. If it stored the end,
			// that end is on its way to us; wait a few ticks for it.
			if f.joined && g.m.genEndStored(ctx, h) && endStoredTicks < 3 {
				endStoredTicks++
				continue
			}
			return again // a new leader, or none: route again (take over)
		}
		// Other errors are transient: look again at the next tick.
	}
}

// following is one attempt to follow a remote generation.
type following struct {
	g      *generation
	h      leaseValue
	joined bool
	stopCC func()
	gap    chan struct{} // closed when an event is missing
}

// join registers with the leader and starts reading the generation.
func (f *following) join(ctx context.Context) error {
	g := f.g
	if err := g.m.join(ctx, f.h, g.id); err != nil {
		if !errors.Is(err, errGenGone) {
			g.m.leave(f.h, g.id) // the join may have registered after all
		}
		return err
	}
	f.joined = true
	attempt, ok := g.newAttempt(modeFollow, f.h.Gen, natstrace.SpanContext(f.h.Trace))
	if !ok {
		return nil // ended meanwhile; follow sees endCh
	}
	gap := make(chan struct{})
	var once sync.Once
	stop, err := g.readGeneration(ctx, f.h, attempt, func() { once.Do(func() { close(gap) }) })
	if err != nil {
		close(gap)
	}
	f.gap, f.stopCC = gap, stop
	return nil
}

// stop stops reading and leaves the leader, unless the generation ended
// (then the leader is done with us anyway).
func (f *following) stop() {
	if f.stopCC != nil {
		f.stopCC()
	}
	if f.joined && !f.g.isEnded() {
		f.g.m.leave(f.h, f.g.id)
	}
}

// readGeneration reads h's generation subject from its first event into
// the log as attempt. A missing event calls gap. The returned func stops
// reading and waits until the consumer has stopped.
func (g *generation) readGeneration(ctx context.Context, h leaseValue, attempt int, gap func()) (func(), error) {
	cons, err := g.m.js.OrderedConsumer(ctx, g.m.cfg.Names.RepliesStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{g.m.cfg.Names.Gen(h.Tenant, h.Gen)},
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
		if err != nil || ev.ID != h.Gen {
			return
		}
		if ev.Seq != want {
			gap()
			return
		}
		want++
		switch ev.Type {
		case protocol.EventChunk, protocol.EventReset, protocol.EventProgress, protocol.EventDone, protocol.EventError, protocol.EventCancelled:
			g.appendEntry(attempt, entryFromEvent(&ev))
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
func (m *Manager) genEndStored(ctx context.Context, h leaseValue) bool {
	last, err := m.top.Replies.GetLastMsgForSubject(ctx, m.cfg.Names.Gen(h.Tenant, h.Gen))
	if err != nil {
		return false
	}
	ev, err := protocol.DecodeEvent(last.Data)
	return err == nil && ev.Type.Terminal()
}
