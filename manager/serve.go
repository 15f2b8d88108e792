package manager

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/protocol"
)

// serve joins the request's hub, announces the request's role, and
// relays the hub's answer onto the reply subject until the end.
func (r *request) serve() {
	_, route := r.m.tracer.Start(r.traceCtx, "chatfleet.route")
	defer route.End()
	sub, err := r.m.hubs.join(r)
	if errors.Is(err, errShutdown) {
		r.nak(0) // stopping: another worker takes it at once
		return
	}
	if err != nil {
		r.endWithError(&protocol.Error{Code: protocol.CodeInternal, Message: "cannot compute the dedupe key"})
		return
	}
	defer r.m.hubs.leave(sub)
	h := sub.hub
	tick := time.NewTicker(r.progressEvery())
	defer tick.Stop()

	// Wait until the hub knows how it will answer.
	for routed := false; !routed; {
		select {
		case <-h.routed:
			routed = true
		case <-h.done:
			select {
			case <-h.routed:
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
	role := h.role(r.reqKey)
	r.setRole(role)
	route.SetAttributes(attribute.String("chatfleet.role", string(role)))
	if sc := h.leaderSpanContext(); role != protocol.RoleLeader && sc.IsValid() {
		route.AddLink(trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.String("chatfleet.link", "leader")}})
	}
	route.End()
	r.m.countRole(role)
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

// orphaned ends a request whose hub stopped without an end: on
// shutdown it is handed back; anything else is a bug, reported as such.
func (r *request) orphaned() {
	cause := context.Cause(r.ctx)
	if cause == nil {
		// Stop cancels the manager's contexts one after another: the hub's
		// may be done before this request's is.
		cause = context.Cause(r.m.life)
	}
	if cause != nil {
		r.endByCause(cause)
		return
	}
	r.endWithError(&protocol.Error{Code: protocol.CodeInternal, Message: "the hub stopped without a result"})
}

// becomeFollower trades the request (or waiting) slot for a follower
// slot, so the worker can pull more jobs to lead while this one only
// relays. While the
// follower pool is full it waits, reporting progress to JetStream and, in
// progress events, to its reader.
func (r *request) becomeFollower() error {
	if !r.m.slots.followers.tryAcquire() {
		r.stage, r.reason = protocol.StageWaiting, protocol.ReasonFollowerSlot
		if err := r.publish(protocol.Event{Type: protocol.EventProgress, Stage: r.stage, Reason: r.reason}); err != nil {
			return err
		}
		every := min(r.progressEvery(), r.m.cfg.ProgressInterval)
		for {
			ctx, cancel := context.WithTimeout(r.ctx, every)
			err := r.m.slots.followers.acquire(ctx)
			cancel()
			if err == nil {
				break
			}
			if r.ctx.Err() != nil {
				return r.ctx.Err()
			}
			r.progress()
			if err := r.heartbeat(); err != nil {
				return err
			}
		}
		r.stage, r.reason = "", ""
	}
	r.permit.moveTo(slotFollower)
	return nil
}
