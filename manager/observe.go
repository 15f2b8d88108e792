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
//
// Spans follow OpenTelemetry's messaging conventions (messaging.*) for the
// job, and the GenAI conventions (gen_ai.*) for the upstream stream. A
// job's span continues the producer's trace (W3C trace context in the
// job's headers); a follower's route span links to its leader's job span,
// which the lease value carries as a traceparent for other workers
// (natstrace.Traceparent and natstrace.SpanContext).

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
	r.countInFlight(1)
}

// countInFlight adds delta to the in-flight count of the request's role,
// in the metrics and the stats alike.
func (r *request) countInFlight(delta int64) {
	i := roleIndex(r.roleLabel())
	r.m.metrics.inFlight.Add(r.traceCtx, delta, roleSets[i])
	r.m.stats.inFlight[i].Add(delta)
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
	r.countInFlight(-1)
	r.role = role
	r.countInFlight(1)
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
	r.countInFlight(-1)
	if r.outcome != "" {
		m.metrics.jobs.Add(ctx, 1, jobSet(r.outcome, role, string(r.code)))
		m.metrics.processing.Record(ctx, time.Since(r.pulled).Seconds(), outcomeSet(r.outcome))
	}
	m.countTenantJob(r)
	if r.outcome == string(protocol.EventDone) && r.usage != nil {
		switch r.role {
		case protocol.RoleFollower:
			m.metrics.tokensSaved.Add(ctx, int64(r.usage.TotalTokens), savedByDedupe)
		case protocol.RoleCache:
			m.metrics.tokensSaved.Add(ctx, int64(r.usage.TotalTokens), savedByCache)
		}
	}
	if r.job != nil {
		r.log.Debug("request ended", "outcome", r.outcome, "role", role, "code", r.code,
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
