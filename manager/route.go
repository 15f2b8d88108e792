package manager

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/chatfleet/chatfleet/protocol"
)

// next is what run does after one routing step.
type next uint8

const (
	ended      next = iota // the generation has its end (or was handed back)
	again                  // route again now: the lease changed hands
	againLater             // route again after a backoff: a transient failure
)

// maxRoutes bounds routing attempts, so a generation can never spin.
const maxRoutes = 20

// run answers the generation: from the cache, by leading, or by following,
// routing again when a leader dies or a lease changes hands.
func (g *generation) run() {
	defer g.finish()
	if g.key == "" {
		g.lead(nil, protocol.NewID())
		return
	}
	delay := 10 * time.Millisecond
	for range maxRoutes {
		if g.ctx.Err() != nil {
			g.endByContext(g.ctx, nil)
			return
		}
		switch g.route() {
		case ended:
			return
		case again:
			continue
		case againLater:
			select {
			case <-time.After(delay):
			case <-g.ctx.Done():
			}
			delay = min(2*delay, g.m.cfg.LeaseTTL/3)
		}
	}
	g.appendEntry(0, entry{kind: entryEnd, end: &ending{typ: protocol.EventError,
		err: &protocol.Error{Code: protocol.CodeInternal, Message: "could not settle who generates this answer"}}})
}

// route takes one step: cache, then the lease, then lead or follow.
func (g *generation) route() next {
	ctx := g.ctx
	if a := g.cached(ctx); a != nil {
		g.serveCached(a)
		return ended
	}
	genID := protocol.NewID()
	l, err := acquireLease(ctx, g.m.top.Inflight, g.key, leaseValue{
		Gen: genID, Tenant: g.job.Tenant, Worker: g.m.cfg.WorkerID, Request: g.job.ID, Since: time.Now().UTC(),
	}, g.m.cfg.LeaseTTL)
	switch {
	case err == nil:
		// A leader may have finished between our cache read and our
		// Create: read again, so an answer is never generated twice.
		if a := g.cached(ctx); a != nil {
			_ = l.release(ctx)
			g.serveCached(a)
			return ended
		}
		return g.lead(l, genID)
	case errors.Is(err, jetstream.ErrKeyExists):
		holder, err := readLease(ctx, g.m.top.Inflight, g.key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return again // released in between: try to lead
		}
		if err != nil {
			return againLater
		}
		return g.follow(holder)
	default:
		g.m.cfg.Logger.Warn("lease create failed", "key", g.key, "err", err)
		return againLater
	}
}

// cached returns the cached answer when the generation may use the cache.
func (g *generation) cached(ctx context.Context) *cachedAnswer {
	if !g.useCache {
		return nil
	}
	a, err := g.m.readCache(ctx, g.key)
	if err != nil {
		g.m.cfg.Logger.Debug("cache read failed; treated as a miss", "key", g.key, "err", err)
	}
	return a
}

func (g *generation) serveCached(a *cachedAnswer) {
	g.newAttempt(modeCache, "")
	g.appendEntry(0, entry{kind: entryChunk, content: a.Content, toolCalls: a.ToolCalls})
	g.appendEntry(0, entry{kind: entryEnd, end: &ending{typ: protocol.EventDone, finishReason: a.FinishReason, usage: a.Usage, cached: true}})
}

// endByContext ends a generation after a failure or when ctx (the
// generation's context or one derived from it) is done: cancelled when
// nobody is interested, handed back without an end on shutdown, an error
// otherwise. err is the failure that surfaced, if any.
func (g *generation) endByContext(ctx context.Context, err error) {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errShutdown):
		g.markEnded()
	case errors.Is(cause, errNoInterest):
		g.appendEntry(0, entry{kind: entryEnd, end: &ending{typ: protocol.EventCancelled}})
	default:
		g.appendEntry(0, entry{kind: entryEnd, end: &ending{typ: protocol.EventError, err: errorFor(err, cause)}})
	}
}

// finish unregisters the generation once run returns.
func (g *generation) finish() {
	g.markEnded() // a no-op after an end entry; a safety net otherwise
	g.m.hubsMu.Lock()
	if g.hubKey != "" && g.m.hubs[g.hubKey] == g {
		delete(g.m.hubs, g.hubKey)
	}
	g.m.hubsMu.Unlock()
	g.cancel(nil)
	close(g.done)
}
