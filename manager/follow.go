package manager

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// follow answers from another worker's generation: join its leader (which
// then mirrors the generation to its subject), read that subject from the
// first event, and watch the lease. When the lease vanishes without an end
// stored, the leader died: route again, which takes over by creating the
// lease. When the lease names another generation, follow that one.
func (g *generation) follow(h leaseValue) next {
	ctx := g.ctx
	joined, err := g.m.join(ctx, h)
	if errors.Is(err, errGenGone) {
		return againLater // it just ended: the cache or a new lease follows
	}
	// Any other join failure: the leader may be dead. Watch its lease.
	var stopConsumer func()
	if joined {
		if stopConsumer, err = g.followEvents(ctx, h); err != nil {
			g.m.leave(h)
			return againLater
		}
		defer stopConsumer()
	}
	tick := time.NewTicker(g.m.cfg.LeaseTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-g.endCh:
			return ended
		case <-ctx.Done():
			if joined {
				g.m.leave(h)
			}
			return again // run ends it by its context
		case <-tick.C:
		}
		cur, err := readLease(ctx, g.m.top.Inflight, g.key)
		switch {
		case err == nil && cur.Gen == h.Gen:
			if !joined {
				if joined, _ = g.m.join(ctx, h); joined {
					if stopConsumer, err = g.followEvents(ctx, h); err != nil {
						g.m.leave(h)
						return againLater
					}
					defer stopConsumer()
				}
			}
		case err == nil:
			if joined {
				g.m.leave(h)
			}
			return again // a new leader
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if joined && g.m.genEndStored(ctx, h) {
				continue // the end is on its way to us
			}
			return again // the leader died: try to take over
		}
		// Other errors are transient: look again at the next tick.
	}
}

// followEvents starts a new attempt that reads h's generation subject from
// its first event into the log. The returned func stops reading and waits
// until the consumer has stopped.
func (g *generation) followEvents(ctx context.Context, h leaseValue) (func(), error) {
	g.newAttempt(modeFollow, h.Gen)
	attempt := g.currentAttempt()
	cons, err := g.m.js.OrderedConsumer(ctx, g.m.cfg.Names.RepliesStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{g.m.cfg.Names.Gen(h.Tenant, h.Gen)},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, err
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		ev, err := protocol.DecodeEvent(msg.Data())
		if err != nil || ev.ID != h.Gen {
			return
		}
		switch ev.Type {
		case protocol.EventChunk, protocol.EventDone, protocol.EventError, protocol.EventCancelled:
			g.appendEntry(attempt, entryFromEvent(&ev))
		}
	})
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
