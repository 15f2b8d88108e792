package natstrace

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"
)

func TestRoundTrip(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled,
	})
	h := nats.Header{}
	Inject(trace.ContextWithSpanContext(context.Background(), sc), h)
	if len(h["traceparent"]) != 1 {
		t.Fatalf("headers = %v, want a lower-case traceparent", h)
	}
	if got := trace.SpanContextFromContext(Extract(h)); !got.Equal(sc.WithRemote(true)) {
		t.Errorf("extracted %v, want %v", got, sc)
	}
	// Other spellings, as other producers may send them.
	for _, key := range []string{"Traceparent", "TRACEPARENT"} {
		h2 := nats.Header{key: h["traceparent"]}
		if got := trace.SpanContextFromContext(Extract(h2)); got.TraceID() != sc.TraceID() {
			t.Errorf("%s: not extracted", key)
		}
	}
	if got := SpanContext(Traceparent(sc)); got.SpanID() != sc.SpanID() {
		t.Errorf("traceparent round trip lost the span")
	}
	if Traceparent(trace.SpanContext{}) != "" || SpanContext("junk").IsValid() {
		t.Errorf("invalid values must stay invalid")
	}
	if trace.SpanContextFromContext(Extract(nil)).IsValid() {
		t.Errorf("no headers, no span")
	}
}
