package manager

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/internal/natstrace"
	"github.com/chatfleet/chatfleet/llm"
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
// routing again when a leader dies or a lease changes hands. Only run (and
// what it calls) starts attempts, so the current attempt is stable here.
func (g *generation) run() {
	defer g.finish()
	defer g.recoverPanic()
	if g.hubKey == "" { // private: dedupe off
		if a := g.cached(g.ctx); a != nil {
			g.serveCached(a)
			return
		}
		g.lead(nil, protocol.NewID())
		return
	}
	delay := 10 * time.Millisecond
	for range maxRoutes {
		if g.isEnded() {
			return
		}
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
	g.end(ending{typ: protocol.EventError,
		err: &protocol.Error{Code: protocol.CodeInternal, Message: "could not settle who generates this answer"}})
}

// route takes one step: cache, then the lease, then lead or follow.
func (g *generation) route() next {
	ctx := g.ctx
	if a := g.cached(ctx); a != nil {
		g.serveCached(a)
		return ended
	}
	genID := protocol.NewID()
	// Create runs to completion even if the generation is cancelled
	// meanwhile: a lease created under a cancelled request would otherwise
	// be left for nobody to release. lead sees the cancellation and
	// releases it.
	cctx, cancel := g.finalContext()
	l, fresh, err := acquireLease(cctx, g.m.top.Inflight, g.key, leaseValue{
		Gen: genID, Tenant: g.job.Tenant, Worker: g.m.cfg.WorkerID, Request: g.job.ID, Since: time.Now().UTC(),
		Trace: natstrace.Traceparent(trace.SpanContextFromContext(g.traceCtx)),
	}, g.m.cfg.LeaseTTL)
	cancel()
	switch {
	case err == nil:
		// A leader may have finished between our cache read and our
		// Create: unless the key is fresh, read again, so an answer is
		// never generated twice.
		if !fresh {
			if a := g.cached(ctx); a != nil {
				g.releaseLease(l)
				g.serveCached(a)
				return ended
			}
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
	attempt, ok := g.newAttempt(modeCache, "", trace.SpanContext{})
	if !ok {
		return
	}
	// The whole answer as one delta, cut at the chunk cap like a live one.
	b := chunkBuilder{limit: g.m.chunkLimit()}
	emit := func(e entry) { g.appendEntry(attempt, e) }
	d := llm.Delta{ReasoningContent: a.Reasoning, Content: a.Content, Refusal: a.Refusal, ToolCalls: a.ToolCalls}
	if err := b.add(&d, emit); err != nil {
		g.end(ending{typ: protocol.EventError, err: &protocol.Error{Code: protocol.CodeInternal, Message: "the cached answer cannot be served: " + err.Error()}})
		return
	}
	if b.has {
		emit(b.take())
	}
	g.appendEntry(attempt, entry{kind: entryEnd, end: &ending{typ: protocol.EventDone, finishReason: a.FinishReason, usage: a.Usage, cached: true}})
}

// end appends the end to the current attempt.
func (g *generation) end(e ending) {
	g.mu.Lock()
	attempt := g.attempt
	g.mu.Unlock()
	g.appendEntry(attempt, entry{kind: entryEnd, end: &e})
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
		g.end(ending{typ: protocol.EventCancelled})
	default:
		g.end(ending{typ: protocol.EventError, err: errorFor(err, cause)})
	}
}

// finalContext bounds the KV calls that must finish whatever becomes of
// the generation: lease create, cache write, lease release.
func (g *generation) finalContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), g.m.cfg.LeaseTTL/2)
}

// releaseLease deletes the lease if it is still ours; failure only means
// it expires by itself.
func (g *generation) releaseLease(l *lease) {
	ctx, cancel := g.finalContext()
	defer cancel()
	if err := l.release(ctx); err != nil {
		g.m.cfg.Logger.Debug("lease release failed; it expires by itself", "key", g.key, "err", err)
	}
}

// recoverPanic ends a generation whose goroutine panicked with an internal
// error; its lease, if it held one, expires by itself.
func (g *generation) recoverPanic() {
	p := recover()
	if p == nil {
		return
	}
	g.m.stats.panics.Add(1)
	g.m.metrics.panics.Add(g.traceCtx, 1)
	g.m.cfg.Logger.Error("panic in a generation; recovered", "key", g.key, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	g.end(ending{typ: protocol.EventError, err: &protocol.Error{Code: protocol.CodeInternal, Message: "internal error while generating"}})
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
