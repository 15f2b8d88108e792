package manager

import (
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/protocol"
)

// serve joins the request's generation, announces the request's role, and
// relays the generation onto the reply subject until the end.
func (r *request) serve() {
	_, route := r.m.tracer.Start(r.traceCtx, "chatfleet.route")
	defer route.End()
	sub, err := r.m.attach(r)
	if errors.Is(err, errShutdown) {
		r.nak(0) // stopping: another worker takes it at once
		return
	}
	if err != nil {
		r.endWithError(&protocol.Error{Code: protocol.CodeInternal, Message: "cannot compute the dedupe key"})
		return
	}
	defer sub.leave()
	g := sub.g
	tick := time.NewTicker(r.progressEvery())
	defer tick.Stop()

	// Wait until the generation knows how it will answer.
	for routed := false; !routed; {
		select {
		case <-g.routed:
			routed = true
		case <-g.done:
			select {
			case <-g.routed:
				routed = true
			default:
				r.orphaned() // ended before routing: a shutdown
				return
			}
		case <-r.ctx.Done():
			r.endByContext()
			return
		case <-tick.C:
			r.progress()
		}
	}
	role := g.role(r.key)
	r.setRole(role)
	route.SetAttributes(attribute.String("chatfleet.role", string(role)))
	if sc := g.leaderSpanContext(); role != protocol.RoleLeader && sc.IsValid() {
		route.AddLink(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("chatfleet.link", "leader")}})
	}
	route.End()
	switch role {
	case protocol.RoleLeader:
		r.m.stats.leaders.Add(1)
	case protocol.RoleFollower:
		r.m.stats.followers.Add(1)
	case protocol.RoleCache:
		r.m.stats.cacheHits.Add(1)
	}
	_, r.relaySpan = r.m.tracer.Start(r.traceCtx, "chatfleet.relay")
	if r.publish(protocol.Event{Type: protocol.EventMeta, Worker: r.m.cfg.WorkerID, Role: role, Model: r.job.Model}) != nil {
		return
	}
	if role != protocol.RoleLeader {
		if err := r.becomeFollower(); err != nil {
			if !r.settled {
				r.endByContext()
			}
			return
		}
	}
	r.relay(sub, tick)
}

// relay copies the generation's entries onto the reply subject, renumbered,
// until the end entry. Until the first chunk it also tells the reader what
// the request waits for (progress events): a stage that has held for
// stageSettle goes out — one that output or the next stage follows sooner
// is not worth an event — and the stage is repeated after every
// ProgressInterval without an event, so a reader can tell a request that
// waits from one that is stuck.
func (r *request) relay(sub *subscription, tick *time.Ticker) {
	g := sub.g
	quiet := time.NewTimer(r.m.cfg.ProgressInterval) // the heartbeat
	defer quiet.Stop()
	settle := time.NewTimer(stageSettle)
	settle.Stop()
	defer settle.Stop()
	stagePending := false
	for {
		entries, wake := g.since(sub.next)
		for _, e := range entries {
			sub.next++
			if e.kind != entryProgress {
				stagePending = false // superseded by output or the end
			}
			switch e.kind {
			case entryProgress:
				if r.firstChunk.IsZero() { // progress tells of the wait for the first output only
					r.stage, r.reason, stagePending = e.stage, e.reason, true
					settle.Reset(stageSettle)
				}
			case entryChunk:
				if r.firstChunk.IsZero() {
					r.firstChunk = time.Now()
					r.observeFirstChunk()
				}
				r.chunks++
				ev := protocol.Event{Type: protocol.EventChunk}
				e.fillChunk(&ev)
				if r.publish(ev) != nil {
					return
				}
			case entryReset:
				if r.chunks > 0 {
					r.chunks = 0
					if r.publish(protocol.Event{Type: protocol.EventReset}) != nil {
						return
					}
				}
			case entryEnd:
				r.end(protocol.Event{Type: e.end.typ, FinishReason: e.end.finishReason, Usage: e.end.usage, Cached: e.end.cached, Error: e.end.err,
					Timings: e.end.timings()})
				return
			}
		}
		select {
		case <-settle.C:
			if stagePending {
				stagePending = false
				if r.publish(protocol.Event{Type: protocol.EventProgress, Stage: r.stage, Reason: r.reason}) != nil {
					return
				}
				quiet.Reset(r.m.cfg.ProgressInterval)
			}
		case <-quiet.C:
			if r.firstChunk.IsZero() {
				if r.heartbeat() != nil {
					return
				}
				quiet.Reset(r.m.cfg.ProgressInterval)
			}
		case <-wake:
		case <-g.done:
			// The end may have been appended just before run returned:
			// read once more before calling the generation orphaned.
			if rest, _ := g.since(sub.next); len(rest) == 0 {
				r.orphaned()
				return
			}
		case <-r.ctx.Done():
			r.endByContext()
			return
		case <-tick.C:
			r.progress()
		}
	}
}

// stageSettle is how long a stage must hold before a progress event says
// so: long enough that a leader whose upstream answers at once sends none,
// short enough that a reader hears of a wait within a blink.
const stageSettle = 100 * time.Millisecond

// heartbeat repeats the request's current stage: it is alive and still
// waiting for its first output.
func (r *request) heartbeat() error {
	stage := r.stage
	if stage == "" {
		stage = protocol.StageGenerating // routed, and nothing reported yet: the leader is at work
	}
	return r.publish(protocol.Event{Type: protocol.EventProgress, Stage: stage, Reason: r.reason})
}

// orphaned ends a request whose generation stopped without an end: on
// shutdown it is handed back; anything else is a bug, reported as such.
func (r *request) orphaned() {
	if r.ctx.Err() != nil {
		r.endByContext()
		return
	}
	r.endWithError(&protocol.Error{Code: protocol.CodeInternal, Message: "the generation stopped without a result"})
}
