package manager

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/internal/natstrace"
	"github.com/chatfleet/chatfleet/protocol"
)

// A request's spans and metrics: begun when it is pulled, ended once it is
// settled (acked, handed back or terminated).

// roleLabel is the role for metrics: "routing" until the role is known.
func (r *request) roleLabel() string {
	if r.role == "" {
		return "routing"
	}
	return string(r.role)
}

// observeBegin starts the job's span (from its arrival in the queue, child
// of the producer's span) with the queue wait as its first child.
func (r *request) observeBegin(meta *jetstream.MsgMetadata) {
	m := r.m
	ctx, span := m.tracer.Start(natstrace.Extract(r.msg.Headers()), "process "+r.msg.Subject(),
		trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(r.arrived),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", r.msg.Subject()),
			attribute.Int64("messaging.nats.stream.sequence", int64(meta.Sequence.Stream)),
			attribute.Int64("messaging.nats.delivery.count", int64(meta.NumDelivered)),
		))
	r.traceCtx, r.span = ctx, span
	_, wait := m.tracer.Start(ctx, "chatfleet.queue_wait", trace.WithTimestamp(r.arrived))
	wait.End(trace.WithTimestamp(r.pulled))
	m.metrics.queueWait.Record(ctx, max(r.pulled.Sub(r.arrived), 0).Seconds())
	m.metrics.inFlight.Add(ctx, 1, roleSet(r.roleLabel()))
	m.stats.inFlight[roleIndex(r.roleLabel())].Add(1)
}

// observeJob adds what decoding revealed to the job's span.
func (r *request) observeJob() {
	r.span.SetAttributes(
		attribute.String("messaging.message.id", r.job.ID),
		attribute.String("chatfleet.tenant", r.job.Tenant),
		attribute.String("gen_ai.request.model", r.job.Model),
	)
}

// setRole records the role the request plays, once known.
func (r *request) setRole(role protocol.Role) {
	ctx := r.traceCtx
	r.m.metrics.inFlight.Add(ctx, -1, roleSet(r.roleLabel()))
	r.m.stats.inFlight[roleIndex(r.roleLabel())].Add(-1)
	r.role = role
	r.m.metrics.inFlight.Add(ctx, 1, roleSet(r.roleLabel()))
	r.m.stats.inFlight[roleIndex(r.roleLabel())].Add(1)
	r.span.SetAttributes(attribute.String("chatfleet.role", string(role)))
}

// observeFirstChunk records the time to first token.
func (r *request) observeFirstChunk() {
	r.m.metrics.ttft.Record(r.traceCtx, max(r.firstChunk.Sub(r.arrived), 0).Seconds(), roleSet(r.roleLabel()))
}

// observeEnd records the outcome and ends the spans; Handle defers it.
func (r *request) observeEnd() {
	if r.span == nil {
		return // never began (no metadata)
	}
	m, ctx, role := r.m, r.traceCtx, r.roleLabel()
	m.metrics.inFlight.Add(ctx, -1, roleSet(role))
	m.stats.inFlight[roleIndex(role)].Add(-1)
	if r.outcome != "" {
		m.metrics.jobs.Add(ctx, 1, jobSet(r.outcome, role, string(r.code)))
		m.metrics.processing.Record(ctx, time.Since(r.pulled).Seconds(), outcomeSet(r.outcome))
	}
	if r.outcome == string(protocol.EventDone) && r.usage != nil {
		switch r.role {
		case protocol.RoleFollower:
			m.metrics.tokensSaved.Add(ctx, int64(r.usage.TotalTokens), attrs(attribute.String("by", "dedupe")))
		case protocol.RoleCache:
			m.metrics.tokensSaved.Add(ctx, int64(r.usage.TotalTokens), attrs(attribute.String("by", "cache")))
		}
	}
	if r.job != nil {
		r.log.Debug("request ended", "outcome", r.outcome, "role", r.roleLabel(), "code", r.code,
			"seq", r.seq, "processing_ms", ms(time.Since(r.pulled)))
	}
	if r.relaySpan != nil {
		r.relaySpan.End()
	}
	r.span.SetAttributes(attribute.String("chatfleet.outcome", r.outcome))
	if r.outcome == string(protocol.EventError) {
		r.span.SetStatus(codes.Error, string(r.code))
		r.span.SetAttributes(attribute.String("error.type", string(r.code)))
	}
	r.span.End()
}
