package manager

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/internal/natstrace"
	"github.com/chatfleet/chatfleet/llm"
	"github.com/chatfleet/chatfleet/protocol"
)

// routeResult is what run does after one routing step.
type routeResult uint8

const (
	routeEnded        routeResult = iota // the hub has its end (or was handed back)
	routeAgain                           // route again now: the lease changed hands
	routeAfterBackoff                    // route again after a backoff: a transient failure
)

// maxRoutes bounds routing attempts, so a hub can never spin.
const maxRoutes = 20

// run answers the hub: from the cache, by leading, or by following,
// routing again when a leader dies or a lease changes hands. Only run (and
// what it calls) starts generations, so the current one is stable here.
func (h *hub) run() {
	defer h.finish()
	defer func() {
		// A panic ends the hub with an internal error; a lease it held
		// expires by itself.
		if h.m.panicked(recover(), "panic in a hub; recovered", "key", h.dedupeKey) {
			h.end(ending{typ: protocol.EventError, err: &protocol.Error{Code: protocol.CodeInternal, Message: "internal error while generating"}})
		}
	}()
	if h.hubKey == "" { // private: dedupe off
		if a := h.cached(h.ctx); a != nil {
			h.serveCached(a)
			return
		}
		h.lead(nil, protocol.NewID())
		return
	}
	delay := 10 * time.Millisecond
	for range maxRoutes {
		if h.isEnded() {
			return
		}
		if h.ctx.Err() != nil {
			h.endByContext(h.ctx, nil)
			return
		}
		switch h.route() {
		case routeEnded:
			return
		case routeAgain:
			continue
		case routeAfterBackoff:
			select {
			case <-time.After(delay):
			case <-h.ctx.Done():
			}
			delay = min(2*delay, h.m.leaseTTL()/3)
		}
	}
	h.end(ending{typ: protocol.EventError,
		err: &protocol.Error{Code: protocol.CodeInternal, Message: "could not settle who generates this answer"}})
}

// route takes one step: cache and lease together, then lead or follow.
// The cache read and the lease's Create go out at once, so a miss costs
// one KV round trip before the upstream call, not two; a hit gives back
// the lease it may have won meanwhile.
func (h *hub) route() routeResult {
	ctx := h.ctx
	cacheRead := h.cachedAsync(ctx)
	genID := protocol.NewID()
	// Create runs to completion even if the hub is cancelled
	// meanwhile: a lease created under a cancelled request would otherwise
	// be left for nobody to release. lead sees the cancellation and
	// releases it.
	cctx, cancel := h.finalContext()
	l, fresh, err := acquireLease(cctx, h.m.topo.Inflight, h.dedupeKey, leaseValue{
		Gen: genID, Tenant: h.job.Tenant, Worker: h.m.cfg.WorkerID, Request: h.job.ID, Since: time.Now().UTC(),
		Trace: natstrace.Traceparent(trace.SpanContextFromContext(h.traceCtx)),
	}, h.m.leaseTTL())
	cancel()
	if a := <-cacheRead; a != nil {
		if err == nil {
			h.releaseLease(l)
		}
		h.serveCached(a)
		return routeEnded
	}
	switch {
	case err == nil:
		// A leader may have finished between our cache read and our
		// Create: unless the key is fresh, read again, so an answer is
		// never generated twice.
		if !fresh {
			if a := h.cached(ctx); a != nil {
				h.releaseLease(l)
				h.serveCached(a)
				return routeEnded
			}
		}
		return h.lead(l, genID)
	case errors.Is(err, jetstream.ErrKeyExists):
		holder, err := readLease(ctx, h.m.topo.Inflight, h.dedupeKey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return routeAgain // released in between: try to lead
		}
		if err != nil {
			return routeAfterBackoff
		}
		return h.follow(holder)
	default:
		h.m.cfg.Logger.Warn("lease create failed", "key", h.dedupeKey, "err", err)
		return routeAfterBackoff
	}
}

// cachedAsync reads the cache (see cached) beside the caller; the
// channel delivers the answer or nil, once. The read is bounded by ctx,
// which outlives the caller's wait for it.
func (h *hub) cachedAsync(ctx context.Context) <-chan *cachedAnswer {
	out := make(chan *cachedAnswer, 1)
	if !h.useCache {
		out <- nil
		return out
	}
	go func() { out <- h.cached(ctx) }() // owner: route, which always receives
	return out
}

// cached returns the cached answer when the hub may use the cache.
func (h *hub) cached(ctx context.Context) *cachedAnswer {
	if !h.useCache {
		return nil
	}
	a, err := h.m.readCache(ctx, h.dedupeKey)
	if err != nil {
		h.m.cfg.Logger.Debug("cache read failed; treated as a miss", "key", h.dedupeKey, "err", err)
	}
	return a
}

func (h *hub) serveCached(a *cachedAnswer) {
	gen, ok := h.newGeneration(modeCache, "", trace.SpanContext{})
	if !ok {
		return
	}
	emit := func(e entry) { h.appendEntry(gen, e) }
	for i := range a.Tools {
		replayTool(&a.Tools[i], emit)
	}
	// The whole answer as one delta, cut at the chunk cap like a live one.
	b := chunkBuilder{limit: h.m.chunkLimit()}
	d := llm.Delta{ReasoningContent: a.Reasoning, Content: a.Content, Refusal: a.Refusal, ToolCalls: a.ToolCalls}
	if err := b.add(&d, emit); err != nil {
		h.end(ending{typ: protocol.EventError, err: &protocol.Error{Code: protocol.CodeInternal, Message: "the cached answer cannot be served: " + err.Error()}})
		return
	}
	if b.has {
		emit(b.take())
	}
	h.appendEntry(gen, entry{kind: entryEnd, end: &ending{typ: protocol.EventDone, finishReason: a.FinishReason, usage: a.Usage, cached: true}})
}

// end appends the end to the current generation.
func (h *hub) end(e ending) {
	h.mu.Lock()
	gen := h.gen
	h.mu.Unlock()
	h.appendEntry(gen, entry{kind: entryEnd, end: &e})
}

// endByContext ends a hub after a failure or when ctx (the hub's
// context or one derived from it) is done: cancelled when
// nobody is interested, handed back without an end on shutdown, an error
// otherwise. err is the failure that surfaced, if any.
func (h *hub) endByContext(ctx context.Context, err error) {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errShutdown):
		h.markEnded()
	case errors.Is(cause, errNoInterest):
		h.end(ending{typ: protocol.EventCancelled})
	default:
		h.end(ending{typ: protocol.EventError, err: errorFor(err, cause)})
	}
}

// finalContext bounds the KV calls that must finish whatever becomes of
// the hub: lease create, cache write, lease release.
func (h *hub) finalContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(h.m.hard, h.m.leaseTTL()/2)
}

// releaseLease deletes the lease if it is still ours; failure only means
// it expires by itself.
func (h *hub) releaseLease(l *lease) {
	ctx, cancel := h.finalContext()
	defer cancel()
	if err := l.release(ctx); err != nil {
		h.m.cfg.Logger.Debug("lease release failed; it expires by itself", "key", h.dedupeKey, "err", err)
	}
}

// finish unregisters the hub once run returns.
func (h *hub) finish() {
	h.markEnded() // a no-op after an end entry; a safety net otherwise
	h.m.hubs.finished(h)
	h.cancel(nil)
	close(h.done)
}
