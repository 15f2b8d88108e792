// Package natstrace carries W3C trace context in NATS message headers, for
// the publisher (inject) and the worker (extract).
package natstrace

import (
	"context"
	"net/textproto"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Propagator is W3C Trace Context: traceparent and tracestate headers.
var Propagator = propagation.TraceContext{}

// Carrier reads and writes trace context on NATS headers. Keys are matched
// case-insensitively (a producer in another language may write
// "Traceparent" or "traceparent") and written lower-case, as the W3C spec
// spells them.
type Carrier nats.Header

// Get returns the first value of key, however it is cased.
func (c Carrier) Get(key string) string {
	for _, k := range []string{key, strings.ToLower(key), textproto.CanonicalMIMEHeaderKey(key)} {
		if v := c[k]; len(v) > 0 {
			return v[0]
		}
	}
	for k, v := range c { // any other spelling
		if strings.EqualFold(k, key) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// Set sets key, lower-cased.
func (c Carrier) Set(key, value string) { c[strings.ToLower(key)] = []string{value} }

// Keys lists the header names.
func (c Carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes ctx's span context into h.
func Inject(ctx context.Context, h nats.Header) { Propagator.Inject(ctx, Carrier(h)) }

// Extract returns a context carrying the span context in h, if any.
func Extract(h nats.Header) context.Context {
	if h == nil {
		return context.Background()
	}
	return Propagator.Extract(context.Background(), Carrier(h))
}

// Traceparent encodes a span context as a traceparent value ("" if invalid).
func Traceparent(sc trace.SpanContext) string {
	if !sc.IsValid() {
		return ""
	}
	h := nats.Header{}
	Inject(trace.ContextWithSpanContext(context.Background(), sc), h)
	return Carrier(h).Get("traceparent")
}

// SpanContext decodes a traceparent value (invalid if it is not one).
func SpanContext(traceparent string) trace.SpanContext {
	if traceparent == "" {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(Extract(nats.Header{"traceparent": {traceparent}}))
}
