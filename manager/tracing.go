package manager

import (
	"go.opentelemetry.io/otel/trace"

	"github.com/chatfleet/chatfleet/internal/natstrace"
)

// Spans follow OpenTelemetry's messaging conventions (messaging.*) for the
// job, and the GenAI conventions (gen_ai.*) for the upstream stream. A
// job's span continues the producer's trace (W3C trace context in the
// job's headers); a follower's route span links to its leader's job span,
// which the lease value carries as a traceparent for other workers.

func traceparent(sc trace.SpanContext) string { return natstrace.Traceparent(sc) }

func spanContextOf(tp string) trace.SpanContext { return natstrace.SpanContext(tp) }
